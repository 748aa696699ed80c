from django.apps import AppConfig


class DanmakuConfig(AppConfig):
    name = "danmaku"
    verbose_name = "Danmaku"
