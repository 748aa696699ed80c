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
