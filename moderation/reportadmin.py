"""Viewers' reports in Django admin: every report, heaviest comment first,
with hide and dismiss as actions (``moderation.reports.report_resolve``,
audited). Imported by ``moderation.admin``, which registers the rest."""

from __future__ import annotations

from django.contrib import admin
from django.db.models import Count, F, FloatField, OuterRef, Subquery, Sum
from django.db.models.functions import Coalesce

from danmaku.errors import DanmakuError
from moderation.forms import ReasonActionForm, action_reason
from moderation.models import Report
from moderation.reports import report_resolve


def _per_comment(aggregate):
    # The open reports of the row's comment, summed: a row sorts with its comment's weight.
    return Subquery(
        Report.objects.filter(danmaku_id=OuterRef("danmaku_id"), state=Report.State.OPEN)
        .order_by()
        .values("danmaku_id")
        .annotate(value=aggregate)
        .values("value")[:1]
    )


@admin.register(Report)
class ReportAdmin(admin.ModelAdmin):
    """Read-only rows; a report changes only by being resolved, for its whole comment."""

    list_display = (
        "danmaku_text",
        "room",
        "reporter",
        "reason",
        "text",
        "state",
        "comment_reporters",
        "comment_weight",
        "in_good_standing",
        "viewers",
        "created_at",
        "resolved_by",
    )
    list_filter = ("state", "reason", "in_good_standing", "room")
    search_fields = ("danmaku__text", "reporter__username", "text")
    list_select_related = ("danmaku", "room", "reporter", "resolved_by")
    raw_id_fields = ("danmaku", "reporter", "resolved_by")
    actions = ("hide_selected", "dismiss_selected")
    action_form = ReasonActionForm

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .annotate(
                _reporters=Coalesce(_per_comment(Count("id")), 0),
                _weight=Coalesce(_per_comment(Sum("weight")), 0.0, output_field=FloatField()),
            )
            .order_by(F("_weight").desc(), F("_reporters").desc(), "danmaku_id", "-created_at")
        )

    @admin.display(description="comment", ordering="danmaku__text")
    def danmaku_text(self, obj: Report) -> str:
        return f"#{obj.danmaku_id}: {obj.danmaku.text[:60]}"

    @admin.display(description="open reports of the comment", ordering="_reporters")
    def comment_reporters(self, obj: Report) -> int:
        return obj._reporters

    @admin.display(description="weight of its reporters", ordering="_weight")
    def comment_weight(self, obj: Report) -> float:
        return round(obj._weight, 3)

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def get_readonly_fields(self, request, obj=None):
        return [field.name for field in self.model._meta.fields]

    def _resolve(self, request, queryset, action: str, done: str) -> None:
        reason = action_reason(self, request)
        if reason is None:
            return
        resolved = 0
        for danmaku_id in (
            queryset.filter(state=Report.State.OPEN).order_by().values_list("danmaku_id", flat=True).distinct()
        ):
            try:
                resolved += report_resolve(danmaku_id=danmaku_id, action=action, actor=request.user, reason=reason)
            except DanmakuError:
                continue  # resolved meanwhile
        self.message_user(request, f"{resolved} reports {done}.")

    @admin.action(description="Hide the reported comments (resolves all their open reports)", permissions=["change"])
    def hide_selected(self, request, queryset):
        self._resolve(request, queryset, "hide", "resolved: comment hidden")

    @admin.action(description="Dismiss the reports of the selected comments", permissions=["change"])
    def dismiss_selected(self, request, queryset):
        self._resolve(request, queryset, "dismiss", "dismissed")
