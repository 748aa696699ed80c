from django.contrib import admin

from danmaku.models import ApiToken, Danmaku, Room, ViewerProfile


@admin.register(Room)
class RoomAdmin(admin.ModelAdmin):
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
        (None, {"fields": ("slug", "title", "is_open")}),
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
    )


@admin.register(Danmaku)
class DanmakuAdmin(admin.ModelAdmin):
    list_display = ("id", "room", "user", "text", "status", "ts_ms", "created_at")
    list_filter = ("status", "room")
    search_fields = ("text", "user__username")
    raw_id_fields = ("user",)
    list_select_related = ("room", "user")


@admin.register(ViewerProfile)
class ViewerProfileAdmin(admin.ModelAdmin):
    list_display = ("user", "nickname", "avatar_url")
    search_fields = ("user__username", "nickname")
    raw_id_fields = ("user",)


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ("user", "label", "created_at", "revoked")
    list_filter = ("revoked",)
    readonly_fields = ("key_hash", "created_at")
    raw_id_fields = ("user",)
