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
    created_at = models.DateTimeField(auto_now_add=True)
    # Indexed: every process polls max(updated_at) to notice changes.
    updated_at = models.DateTimeField(auto_now=True, db_index=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ("term",)
        constraints = [models.UniqueConstraint(fields=("kind", "term"), name="blockedterm_kind_term")]

    def __str__(self) -> str:
        return f"{self.term} ({self.kind}, {self.action})"
