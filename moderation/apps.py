from django.apps import AppConfig


class ModerationConfig(AppConfig):
    name = "moderation"
    verbose_name = "Moderation"

    def ready(self) -> None:
        from moderation import checks, deadlines, hooks  # noqa: F401  (checks registers the checks)

        # What the send path and the viewer page ask of moderation.
        hooks.install()
        # Its background job, for roles send and all (see moderation.deadlines).
        deadlines.register()
