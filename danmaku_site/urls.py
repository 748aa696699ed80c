from django.contrib import admin
from django.urls import path

from danmaku import views
from danmaku_site.api import api

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v1/", api.urls),
    path("rooms/<slug:slug>/", views.room_page, name="room-page"),
    path("", views.index, name="index"),
]
