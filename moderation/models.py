from __future__ import annotations

from django.conf import settings
from django.db import models


class BlockedTerm(models.Model):
    """A word or pattern comments are checked against. Saved through
    ``moderation.services.blocked_term_save``, which validates it."""

    class Kind(models.TextChoices):
        EXACT = "exact", "exact (after normalization)"
        WILDCARD = "wildcard", "wildcard (* = any letters within a word)"
        REGEX = "regex", "regular expression (checked by the moderation task only)"

    class Action(models.TextChoices):
        BLOCK = "block", "block: refuse the comment"
        HOLD = "hold", "hold for a moderator"
        MASK = "mask", "mask the matched text with *"

    term = models.CharField(max_length=200)
    kind = models.CharField(max_length=8, choices=Kind.choices, default=Kind.EXACT)
    action = models.CharField(max_length=8, choices=Action.choices, default=Action.BLOCK)
    note = models.CharField(max_length=200, blank=True, help_text="Why the term is here; for other moderators.")
    is_active = models.BooleanField(default=True)
    # Set when the system switched the term off (a stored pattern the
    # matcher cannot use, e.g. a regex RE2 refuses); audited too. Cleared
    # when a moderator saves the term active again.
    disabled_reason = models.CharField(
        max_length=500, blank=True, editable=False, help_text="Why the system switched this term off."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    # Indexed: every process polls max(updated_at) to notice changes.
    updated_at = models.DateTimeField(auto_now=True, db_index=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    room = models.ForeignKey(
        "danmaku.Room",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="blocked_terms",
        help_text="Only this room; empty for every room.",
    )
    expires_at = models.DateTimeField(null=True, blank=True, help_text="Stops acting at this time; empty for never.")
    shadow = models.BooleanField(default=False, help_text="Only count hits, never act: try a term before enforcing it.")
    # Counted in each process's memory and added here at most every
    # TERMS_RELOAD_SECONDS (moderation.services.MatcherCache); updating
    # them never touches updated_at, so it never reloads the matchers.
    hits = models.PositiveBigIntegerField(default=0, editable=False)
    last_hit_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ("term",)
        constraints = [
            models.UniqueConstraint(
                fields=("kind", "term"), condition=models.Q(room__isnull=True), name="blockedterm_kind_term_global"
            ),
            models.UniqueConstraint(
                fields=("kind", "term", "room"),
                condition=models.Q(room__isnull=False),
                name="blockedterm_kind_term_room",
            ),
        ]

    def __str__(self) -> str:
        where = f", room {self.room_id}" if self.room_id else ""
        return f"{self.term} ({self.kind}, {self.action}{where})"


# Timeouts shorter than this are a slip of the finger; longer than two weeks
# is a ban and should say so.
TIMEOUT_MIN_SECONDS = 10
TIMEOUT_MAX_SECONDS = 14 * 24 * 3600


class Sanction(models.Model):
    """A user kept from sending, in one room or everywhere (``room`` null).

    Created and lifted through ``moderation.actions`` only, which audits it.
    """

    class Kind(models.TextChoices):
        TIMEOUT = "timeout"
        BAN = "ban"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="sanctions")
    room = models.ForeignKey(
        "danmaku.Room",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="sanctions",
        help_text="Empty: every room.",
    )
    kind = models.CharField(max_length=8, choices=Kind.choices)
    # Null for a ban: permanent until lifted.
    until = models.DateTimeField(null=True, blank=True)
    reason = models.CharField(max_length=500)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    lifted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ("-created_at", "-id")
        indexes = [
            # The send path asks for a user's sanctions that are not lifted.
            models.Index(fields=("user",), name="sanction_user_active", condition=models.Q(lifted_at__isnull=True)),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.user_id} in {self.room_id or 'every room'}"

    def clean(self) -> None:
        from django.core.exceptions import ValidationError

        if self.kind == self.Kind.BAN:
            if self.until is not None:
                raise ValidationError({"until": "a ban has no end; use a timeout"})
            return
        if self.until is None:
            raise ValidationError({"until": "a timeout needs an end"})
        start = self.created_at
        if start is None:
            from django.utils import timezone

            start = timezone.now()
        seconds = (self.until - start).total_seconds()
        if not TIMEOUT_MIN_SECONDS <= seconds <= TIMEOUT_MAX_SECONDS:
            raise ValidationError(
                {"until": f"a timeout lasts {TIMEOUT_MIN_SECONDS} s to {TIMEOUT_MAX_SECONDS // 86400} days"}
            )


class AuditEntry(models.Model):
    """One moderation action: who, what, target, reason, when. Never edited."""

    # Null: the system (a task or an automatic rule).
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    action = models.CharField(max_length=32, db_index=True)
    target_type = models.CharField(max_length=32)
    target_id = models.CharField(max_length=64)
    room = models.ForeignKey("danmaku.Room", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    reason = models.CharField(max_length=500, blank=True)
    detail = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ("-created_at", "-id")
        verbose_name_plural = "audit entries"
        indexes = [models.Index(fields=("target_type", "target_id"), name="auditentry_target")]

    def __str__(self) -> str:
        return f"{self.action} {self.target_type}:{self.target_id}"


# A report's free text: a sentence or two for the moderator, not an essay.
REPORT_TEXT_MAX_CHARS = 300


class Report(models.Model):
    """A viewer's report of one comment (``moderation.reports``): at most one
    per (comment, reporter); resolved by a moderator or by the room's auto-hide."""

    class Reason(models.TextChoices):
        SPAM = "spam", "spam or flooding"
        ABUSE = "abuse", "harassment or abuse"
        HATE = "hate", "hate speech"
        SEXUAL = "sexual", "sexual content"
        SPOILER = "spoiler", "spoiler"
        OTHER = "other", "something else (say what)"

    class State(models.TextChoices):
        OPEN = "open"
        HIDDEN = "hidden", "hidden (the comment was hidden)"
        DISMISSED = "dismissed", "dismissed (nothing wrong)"
        SANCTIONED = "sanctioned", "sanctioned (hidden, and the sender sanctioned)"

    danmaku = models.ForeignKey("danmaku.Danmaku", on_delete=models.CASCADE, related_name="reports")
    room = models.ForeignKey("danmaku.Room", on_delete=models.CASCADE, related_name="reports")
    reporter = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="reports")
    reason = models.CharField(max_length=8, choices=Reason.choices)
    text = models.CharField(max_length=REPORT_TEXT_MAX_CHARS, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    state = models.CharField(max_length=10, choices=State.choices, default=State.OPEN)
    # Null with a resolved state: the system (the room's auto-hide).
    resolved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    resolved_at = models.DateTimeField(null=True, blank=True)
    # Taken at report time, so the queue's order and the auto-hide count do
    # not move when a reporter's standing changes later.
    in_good_standing = models.BooleanField(default=False)
    weight = models.FloatField(default=0.0, help_text="The reporter's weight at report time (standing).")
    viewers = models.PositiveIntegerField(default=0, help_text="The room's viewer estimate at report time; 0: unknown.")
    # The reporter was told the outcome (GET /api/v1/reports/mine).
    outcome_seen = models.BooleanField(default=False)

    class Meta:
        ordering = ("-created_at", "-id")
        constraints = [models.UniqueConstraint(fields=("danmaku", "reporter"), name="report_once_per_reporter")]
        indexes = [
            # The moderators' queue: a room's open reports.
            models.Index(fields=("room", "danmaku"), name="report_room_open", condition=models.Q(state="open")),
            # Standing (dismissed in the last 30 days) and the no-Redis limit (the last minute).
            models.Index(fields=("reporter", "created_at"), name="report_reporter_created"),
            models.Index(fields=("reporter", "resolved_at"), name="report_reporter_dismissed",
                         condition=models.Q(state="dismissed")),
            # Outcomes a reporter has not been told yet.
            models.Index(
                fields=("reporter",),
                name="report_outcome_unseen",
                condition=~models.Q(state="open") & models.Q(outcome_seen=False),
            ),
        ]  # fmt: skip

    def __str__(self) -> str:
        return f"report {self.reason} of {self.danmaku_id} by {self.reporter_id} ({self.state})"
