"""The live moderation console page: a template; its script talks to /api/v1/moderation/."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, HttpResponseForbidden
from django.shortcuts import get_object_or_404, render
from django.views.decorators.csrf import ensure_csrf_cookie

from danmaku.models import Room
from infra.csp import content_security_policy
from moderation.selectors import LIST_LIMIT_MAX, user_is_moderator

# Rows the console keeps: a few minutes of a busy room; older ones are in the admin.
FEED_LIMIT = min(100, LIST_LIMIT_MAX)


@content_security_policy
@ensure_csrf_cookie
@login_required
def console(request: HttpRequest, slug: str) -> HttpResponse:
    # The role before the room: someone who may not moderate learns nothing
    # about which rooms exist.
    if not user_is_moderator(user=request.user):
        # Answered here, not raised, so the 403 carries the page CSP too.
        return HttpResponseForbidden("Moderators only.", content_type="text/plain; charset=utf-8")
    room = get_object_or_404(Room, slug=slug)
    return render(request, "moderation/console.html", {"room": room, "feed_limit": FEED_LIMIT})
