from django.apps import AppConfig


class DanmakuConfig(AppConfig):
    name = "danmaku"
    verbose_name = "Danmaku"

    def ready(self) -> None:
        from danmaku import changes, sweeps
        from infra import jobs, tallies

        # Its background jobs and the roles that run them (see danmaku.sweeps).
        sweeps.register()
        # Pull nodes write their request counts each refresher tick; send
        # nodes, which run no refresher, here.
        jobs.register(
            "metrics.flush_tallies",
            every_seconds=tallies.FLUSH_EVERY_SECONDS,
            run=tallies.flush_tallies,
            roles=("send",),
        )
        # The send path's caches learn of changes (see danmaku.changes).
        changes.connect()
