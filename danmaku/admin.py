from django.contrib import admin
from django.db import models

from danmaku.models import ApiToken, Danmaku, Room, ViewerProfile
from danmaku.services import room_emergency_apply, room_emergency_undo, room_save
from danmaku.services_avatar import profile_update
from moderation import actions as moderation_actions
from moderation.forms import ReasonActionForm, action_reason


@admin.register(Room)
class RoomAdmin(admin.ModelAdmin):
    actions = ("emergency_apply", "emergency_undo")
    readonly_fields = ("emergency_backup",)

    def formfield_for_dbfield(self, db_field, request, **kwargs):
        # Stream URLs are https only: a scheme-less one typed here means https.
        if db_field.name == "stream_url":
            kwargs["assume_scheme"] = "https"
        return super().formfield_for_dbfield(db_field, request, **kwargs)

    def save_model(self, request, obj, form, change):
        room_save(room=obj)

    @admin.action(description="Emergency preset: slow mode, slower polling, tighter screen, pre-moderation")
    def emergency_apply(self, request, queryset):
        applied = sum(room_emergency_apply(room=room) for room in queryset)
        self.message_user(request, f"Emergency preset applied to {applied} room(s); undo restores their settings.")

    @admin.action(description="Undo the emergency preset")
    def emergency_undo(self, request, queryset):
        undone = sum(room_emergency_undo(room=room) for room in queryset)
        self.message_user(request, f"Emergency preset undone for {undone} room(s).")

    list_display = (
        "slug",
        "title",
        "is_open",
        "poll_interval_ms",
        "display_cap_per_second",
        "room_send_cap_per_second",
    )
    list_filter = ("is_open",)
    search_fields = ("slug", "title")
    fieldsets = (
        (None, {"fields": ("slug", "title", "is_open", "stream_url")}),
        (
            "Throttle (reaches every process within about 2 s)",
            {
                "fields": (
                    "poll_interval_ms",
                    "quiet_interval_ms",
                    "quiet_after_seconds",
                    "display_cap_per_second",
                    "max_text_length",
                    "user_send_interval_ms",
                    "room_send_cap_per_second",
                )
            },
        ),
        ("Moderation", {"fields": ("moderation_policy", "pre_deadline_ms", "pre_fallback", "emergency_backup")}),
    )


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
            except moderation_actions.Conflict:
                continue
            count += 1
        self.message_user(request, f"{count} danmaku {done}.")

    @admin.action(description="Hide selected danmaku from every viewer", permissions=["change"])
    def hide_selected(self, request, queryset):
        self._each(request, queryset, moderation_actions.danmaku_hide, "hidden")

    @admin.action(description="Unhide selected danmaku", permissions=["change"])
    def unhide_selected(self, request, queryset):
        self._each(request, queryset, moderation_actions.danmaku_unhide, "unhidden")

    @admin.action(description="Approve selected held danmaku (publish)", permissions=["change"])
    def approve_selected(self, request, queryset):
        self._each(request, queryset, moderation_actions.held_approve, "approved")

    @admin.action(description="Reject selected held danmaku", permissions=["change"])
    def reject_selected(self, request, queryset):
        self._each(request, queryset, moderation_actions.held_reject, "rejected")


@admin.register(ViewerProfile)
class ViewerProfileAdmin(admin.ModelAdmin):
    # Django 6's default already: an avatar URL typed without a scheme is https.
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}

    def save_model(self, request, obj, form, change):
        # Through the service, so a new avatar URL is fetched and thumbnailed.
        saved = profile_update(user=obj.user, nickname=obj.nickname, avatar_url=obj.avatar_url)
        obj.pk = saved.pk

    list_display = ("user", "nickname", "avatar_url")
    search_fields = ("user__username", "nickname")
    raw_id_fields = ("user",)


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ("user", "label", "created_at", "revoked")
    list_filter = ("revoked",)
    readonly_fields = ("key_hash", "created_at")
    raw_id_fields = ("user",)
