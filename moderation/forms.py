"""Admin form pieces shared by the moderation actions."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.contrib.admin.helpers import ActionForm


class ReasonActionForm(ActionForm):
    """The admin's action bar with a reason box: every moderation action takes one."""

    reason = forms.CharField(required=False, max_length=500, label="Reason")


def action_reason(modeladmin, request) -> str | None:
    """The reason typed next to the action, or None (after telling the user) when blank."""
    reason = request.POST.get("reason", "").strip()
    if not reason:
        modeladmin.message_user(request, "Give a reason for this action.", level=messages.ERROR)
        return None
    return reason
