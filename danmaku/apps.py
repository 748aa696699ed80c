from django.apps import AppConfig


class DanmakuConfig(AppConfig):
    name = "danmaku"
    verbose_name = "Danmaku"

    def ready(self) -> None:
        from danmaku import changes, sweeps

        # Its background jobs and the roles that run them (see danmaku.sweeps).
        sweeps.register()
        # The send path's caches learn of changes (see danmaku.changes).
        changes.connect()
