"""Rooms (product staff's throttle settings and the emergency preset),
viewer profiles and API tokens. Comments are moderated from the moderation
app's admin (``moderation.admin``)."""

from datetime import UTC, datetime

from django.contrib import admin, messages
from django.db import models

from danmaku import segments
from danmaku.audience import room_viewers
from danmaku.broadcasts import broadcast_start, broadcast_stop
from danmaku.errors import DanmakuError
from danmaku.models import ApiToken, Broadcast, Room, ViewerProfile
from danmaku.profiles import profile_update
from danmaku.rooms import room_emergency_apply, room_emergency_undo, room_save
from infra import clock


@admin.register(Room)
class RoomAdmin(admin.ModelAdmin):
    actions = ("emergency_apply", "emergency_undo", "start_broadcast", "stop_broadcast")
    readonly_fields = ("viewers_now", "emergency_backup", "pinned_now")

    @admin.display(description="Viewers now (estimate)")
    def viewers_now(self, room: Room) -> str:
        if room.pk is None:
            return "not saved yet"
        viewers = room_viewers(room_id=room.pk, slug=room.slug)
        return "no pull process serves this room now" if viewers is None else f"{viewers:,}"

    # Read only: moderators pin and unpin from the console (moderation.pins), audited.
    @admin.display(description="Pinned notice")
    def pinned_now(self, room: Room) -> str:
        until = room.pinned_until_ms
        if until is None or until <= clock.now_ms():
            return "nothing pinned"
        what = f"comment #{room.pinned_danmaku_id} by {room.pinned_nick}" if room.pinned_danmaku_id else "notice"
        ends = datetime.fromtimestamp(until / 1000, tz=UTC).isoformat(timespec="seconds")
        return f"“{room.pinned_text}” ({what}), until {ends}"

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

    @admin.action(description="Start a broadcast (its comments replay with the recording)")
    def start_broadcast(self, request, queryset):
        self._each(request, queryset, broadcast_start, "started")

    @admin.action(description="Stop the broadcast (add the recording's URL under Broadcasts)")
    def stop_broadcast(self, request, queryset):
        self._each(request, queryset, broadcast_stop, "stopped")

    def _each(self, request, queryset, act, done: str) -> None:
        for room in queryset:
            try:
                act(room=room)
            except DanmakuError as exc:
                self.message_user(request, exc.detail, messages.WARNING)
            else:
                self.message_user(request, f"Broadcast {done} in room {room.slug}.")

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
        (None, {"fields": ("slug", "title", "is_open", "stream_url", "viewers_now", "pinned_now")}),
        (
            "Throttle (reaches every process within about 2 s)",
            {
                "fields": (
                    "poll_interval_ms",
                    "poll_multiplier",
                    "quiet_interval_ms",
                    "quiet_after_seconds",
                    "display_cap_per_second",
                    "max_text_length",
                    "user_send_interval_ms",
                    "room_send_cap_per_second",
                    "merge_duplicates",
                )
            },
        ),
        ("Moderation", {"fields": ("moderation_policy", "pre_deadline_ms", "pre_fallback", "emergency_backup")}),
        (
            "Viewers' reports (docs/reports.md)",
            {
                "fields": (
                    "report_hide_threshold",
                    "report_min_account_age_hours",
                    "report_min_published",
                    "report_max_dismissed",
                )
            },
        ),
    )


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
    list_display = ("user", "label", "scope", "room", "broadcast", "expires_at", "created_at", "revoked")
    list_filter = ("revoked", "scope")
    readonly_fields = ("key_hash", "created_at")
    raw_id_fields = ("user", "room", "broadcast")

    def save_model(self, request, obj, form, change) -> None:
        if not change:
            # Only the hash is kept: the raw value is shown this once.
            raw = ApiToken.new_raw()
            obj.key_hash = ApiToken.hash(raw)
            super().save_model(request, obj, form, change)
            self.message_user(request, f"The new token (shown only now): {raw}", messages.WARNING)
            return
        super().save_model(request, obj, form, change)


@admin.register(Broadcast)
class BroadcastAdmin(admin.ModelAdmin):
    list_display = ("id", "room", "started_at_ms", "ended_at_ms", "recording_url", "offset_ms")
    list_filter = ("room",)
    # Started and stopped by the room's actions or ``manage.py broadcast``.
    readonly_fields = ("room", "started_at_ms", "ended_at_ms")
    fields = ("room", "started_at_ms", "ended_at_ms", "recording_url", "offset_ms")

    def has_add_permission(self, request) -> bool:
        return False

    def save_model(self, request, obj, form, change) -> None:
        super().save_model(request, obj, form, change)
        if "offset_ms" in form.changed_data:
            # The admin saves in a transaction: the versions change with the offset.
            segments.offset_changed(obj.pk)

    def formfield_for_dbfield(self, db_field, request, **kwargs):
        if db_field.name == "recording_url":
            kwargs["assume_scheme"] = "https"
        return super().formfield_for_dbfield(db_field, request, **kwargs)
