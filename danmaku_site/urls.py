"""URLs, mounted per DANMAKU_ROLE (read once, when this module is imported).

Every role: /healthz, /readyz, /metrics and the API (with only the role's
operations; see danmaku_site.api). Admin and the HTML pages only on "send"
and "all": pull nodes face the viewers' flood and serve nothing else.
"""

from django.conf import settings
from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import path, re_path
from django.views.static import serve

from danmaku import views
from danmaku.dplayerapi import dplayer_v3
from danmaku_site import ops
from danmaku_site.api import api
from infra.csp import content_security_policy
from moderation import views as moderation_views

urlpatterns = [
    path("healthz", ops.healthz, name="healthz"),
    path("readyz", ops.readyz, name="readyz"),
    path("metrics", ops.metrics, name="metrics"),
    path("api/v1/", api.urls),
]

if settings.DANMAKU_ROLE in ("send", "all"):
    urlpatterns += [
        path("admin/", admin.site.urls),
        # LogoutView answers POST only (Django 5): the page's logout is a form.
        path("accounts/login/", content_security_policy(auth_views.LoginView.as_view()), name="login"),
        path("accounts/logout/", content_security_policy(auth_views.LogoutView.as_view()), name="logout"),
        path("rooms/<slug:slug>/", views.room_page, name="room-page"),
        path("broadcasts/<int:pk>/", views.broadcast_page, name="broadcast-page"),
        path("moderate/<slug:slug>/", moderation_views.console, name="moderation-console"),
        # DPlayer's own API shape, for pages embedding DPlayer (docs/replay.md).
        path("api/dplayer/v3/", dplayer_v3, name="dplayer-v3"),
        path("", views.index, name="index"),
    ]

# Avatar thumbnails (MEDIA_URL) in the embedded default; production sets
# DANMAKU_SERVE_MEDIA=0 and lets nginx or a CDN serve MEDIA_ROOT.
if settings.DANMAKU_SERVE_MEDIA and settings.MEDIA_URL.startswith("/"):
    urlpatterns.append(
        re_path(rf"^{settings.MEDIA_URL[1:]}(?P<path>.+)$", serve, {"document_root": settings.MEDIA_ROOT})
    )
