"""Rooms (product staff's throttle settings and the emergency preset),
viewer profiles and API tokens. Comments are moderated from the moderation
app's admin (``moderation.admin``)."""

from django.contrib import admin
from django.db import models

from danmaku.models import ApiToken, Room, ViewerProfile
from danmaku.profiles import profile_update
from danmaku.rooms import room_emergency_apply, room_emergency_undo, room_save


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
                    "poll_multiplier",
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
