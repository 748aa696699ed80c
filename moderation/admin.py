"""Moderation in Django admin: comments (with the actions a moderator takes
on them), blocked terms, sanctions and the read-only audit log."""

from datetime import timedelta

from django import forms
from django.contrib import admin
from django.utils import timezone

from danmaku.models import Danmaku
from moderation import actions, services
from moderation.forms import ReasonActionForm, action_reason
from moderation.matcher import rule_problem
from moderation.models import TIMEOUT_MAX_SECONDS, TIMEOUT_MIN_SECONDS, AuditEntry, BlockedTerm, Sanction
from moderation.reportadmin import ReportAdmin  # noqa: F401  (registers the report queue)


class SenderFilter(admin.SimpleListFilter):
    """Filter by sender: offers the latest senders, and takes any ``?sender=<id>``
    (a full user list would not fit a room with thousands of viewers)."""

    title = "sender"
    parameter_name = "sender"
    RECENT = 20

    def lookups(self, request, model_admin):
        recent = Danmaku.objects.order_by("-id").values_list("user_id", "user__username")[: self.RECENT * 5]
        seen: dict[int, str] = {}
        for user_id, username in recent:
            seen.setdefault(user_id, username)
        return [(str(user_id), username) for user_id, username in list(seen.items())[: self.RECENT]]

    def queryset(self, request, queryset):
        value = self.value()
        if value and value.isdigit():
            return queryset.filter(user_id=int(value))
        return queryset


@admin.register(Danmaku)
class DanmakuAdmin(admin.ModelAdmin):
    """Comments are read-only here: every change is a moderation action
    (``moderation.actions``), which writes one audit row per comment."""

    list_display = ("id", "room", "user", "text", "status", "ts_ms", "created_at")
    # The held-for-review queue: Status = held (oldest first via ts_ms).
    list_filter = ("status", "room", SenderFilter)
    search_fields = ("text", "user__username")
    raw_id_fields = ("user",)
    list_select_related = ("room", "user")
    actions = ("hide_selected", "unhide_selected", "approve_selected", "reject_selected")
    action_form = ReasonActionForm

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return ()
        return [field.name for field in self.model._meta.fields]

    def _each(self, request, queryset, action, done: str) -> None:
        reason = action_reason(self, request)
        if reason is None:
            return
        count = 0
        for pk in queryset.order_by("pk").values_list("pk", flat=True):
            try:
                action(danmaku_id=pk, actor=request.user, reason=reason)
            except actions.Conflict:
                continue
            count += 1
        self.message_user(request, f"{count} danmaku {done}.")

    @admin.action(description="Hide selected danmaku from every viewer", permissions=["change"])
    def hide_selected(self, request, queryset):
        self._each(request, queryset, actions.danmaku_hide, "hidden")

    @admin.action(description="Unhide selected danmaku", permissions=["change"])
    def unhide_selected(self, request, queryset):
        self._each(request, queryset, actions.danmaku_unhide, "unhidden")

    @admin.action(description="Approve selected held danmaku (publish)", permissions=["change"])
    def approve_selected(self, request, queryset):
        self._each(request, queryset, actions.held_approve, "approved")

    @admin.action(description="Reject selected held danmaku", permissions=["change"])
    def reject_selected(self, request, queryset):
        self._each(request, queryset, actions.held_reject, "rejected")


class BlockedTermForm(forms.ModelForm):
    class Meta:
        model = BlockedTerm
        fields = ("term", "kind", "action", "room", "expires_at", "shadow", "note", "is_active")

    def clean(self):
        data = super().clean()
        term, kind = data.get("term"), data.get("kind")
        if term and kind:
            problem = rule_problem(term.strip(), kind)
            if problem:
                self.add_error("term", problem)
        return data


@admin.register(BlockedTerm)
class BlockedTermAdmin(admin.ModelAdmin):
    form = BlockedTermForm
    # hits and last_hit_at are real columns, so the list sorts by them:
    # staff try a term as shadow and watch its hits before enforcing it.
    list_display = (
        "term",
        "kind",
        "action",
        "room",
        "shadow",
        "is_active",
        "disabled_reason",
        "expires_at",
        "hits",
        "last_hit_at",
        "note",
        "updated_at",
        "created_by",
    )
    # The room filter's "-" choice lists the global terms.
    list_filter = ("kind", "action", "shadow", "is_active", "room")
    search_fields = ("term", "note")
    # disabled_reason: why the system switched the term off (e.g. a regex
    # RE2 cannot compile); saving it active again clears it.
    readonly_fields = ("disabled_reason", "hits", "last_hit_at", "created_by", "created_at", "updated_at")
    list_select_related = ("created_by", "room")
    list_per_page = 100

    def save_model(self, request, obj, form, change):
        services.blocked_term_save(term=obj, actor=request.user)

    def delete_model(self, request, obj):
        services.blocked_term_delete(term=obj, actor=request.user)

    def delete_queryset(self, request, queryset):
        for term in queryset:
            services.blocked_term_delete(term=term, actor=request.user)


class SanctionForm(forms.ModelForm):
    seconds = forms.IntegerField(
        required=False,
        min_value=TIMEOUT_MIN_SECONDS,
        max_value=TIMEOUT_MAX_SECONDS,
        help_text=f"Timeouts only: {TIMEOUT_MIN_SECONDS} s to {TIMEOUT_MAX_SECONDS} s (2 weeks).",
    )

    class Meta:
        model = Sanction
        fields = ("user", "room", "kind", "seconds", "reason")

    def clean(self):
        data = super().clean()
        kind, seconds = data.get("kind"), data.get("seconds")
        if kind == Sanction.Kind.TIMEOUT and seconds is None:
            self.add_error("seconds", "a timeout needs a duration")
        if kind == Sanction.Kind.BAN and seconds is not None:
            self.add_error("seconds", "a ban has no end; leave this empty")
        # For the model's own validation; the action sets the real end on save.
        if kind == Sanction.Kind.TIMEOUT and seconds is not None:
            self.instance.until = timezone.now() + timedelta(seconds=seconds)
        return data


@admin.register(Sanction)
class SanctionAdmin(admin.ModelAdmin):
    """Sanctions are created and lifted through ``moderation.actions`` (audited),
    never edited or deleted: the history stays."""

    form = SanctionForm
    list_display = ("user", "room", "kind", "until", "lifted_at", "reason", "created_by", "created_at")
    list_filter = ("kind", ("lifted_at", admin.EmptyFieldListFilter), "room")
    search_fields = ("user__username", "reason")
    raw_id_fields = ("user",)
    list_select_related = ("user", "room", "created_by")
    actions = ("lift_selected",)
    action_form = ReasonActionForm

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return ()
        return ("user", "room", "kind", "until", "reason", "created_by", "created_at", "lifted_at")

    def get_fields(self, request, obj=None):
        if obj is None:
            return ("user", "room", "kind", "seconds", "reason")
        return self.get_readonly_fields(request, obj)

    def has_delete_permission(self, request, obj=None):
        return False

    def save_model(self, request, obj, form, change):
        if change:
            return
        data = form.cleaned_data
        room_id = data["room"].pk if data.get("room") else None
        if data["kind"] == Sanction.Kind.TIMEOUT:
            saved = actions.user_timeout(
                user_id=data["user"].pk,
                room_id=room_id,
                seconds=data["seconds"],
                actor=request.user,
                reason=data["reason"],
            )
        else:
            saved = actions.user_ban(
                user_id=data["user"].pk, room_id=room_id, actor=request.user, reason=data["reason"]
            )
        obj.pk, obj.until, obj.created_at, obj.created_by = saved.pk, saved.until, saved.created_at, saved.created_by

    @admin.action(description="Lift selected sanctions", permissions=["change"])
    def lift_selected(self, request, queryset):
        reason = action_reason(self, request)
        if reason is None:
            return
        lifted = 0
        for sanction_id in queryset.filter(lifted_at__isnull=True).values_list("pk", flat=True):
            try:
                actions.sanction_lift(sanction_id=sanction_id, actor=request.user, reason=reason)
            except actions.Conflict:
                continue
            lifted += 1
        self.message_user(request, f"{lifted} sanctions lifted.")


@admin.register(AuditEntry)
class AuditEntryAdmin(admin.ModelAdmin):
    """Read-only for everyone, superusers included."""

    list_display = ("created_at", "actor", "action", "target_type", "target_id", "room", "reason")
    list_filter = ("action", "target_type", "room")
    search_fields = ("reason", "target_id", "actor__username")
    date_hierarchy = "created_at"
    list_select_related = ("actor", "room")

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
