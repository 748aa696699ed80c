from django.apps import AppConfig


class ModerationConfig(AppConfig):
    name = "moderation"
    verbose_name = "Moderation"

    def ready(self) -> None:
        from moderation import checks, deadlines, hooks, reviewsweep  # noqa: F401  (checks registers the checks)

        # What the send path and the viewer page ask of moderation.
        hooks.install()
        # Its background jobs, for roles send and all: late `pre` verdicts
        # (moderation.deadlines) and comments whose full check never ran
        # (moderation.reviewsweep).
        deadlines.register()
        reviewsweep.register()
