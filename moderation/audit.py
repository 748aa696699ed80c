"""The audit log's one writer.

Every moderation action, and every decision the system takes on its own
(the full check retracting or releasing a comment, a pre-moderation
deadline's fallback), writes one ``AuditEntry`` through ``audit_record``, in
the same transaction as its effect where it has one.
"""

from __future__ import annotations

from moderation.models import AuditEntry


def audit_record(
    *,
    actor,
    action: str,
    target_type: str,
    target_id: int | str,
    room_id: int | None = None,
    reason: str = "",
    detail: dict | None = None,
) -> AuditEntry:
    """The one way to write an audit row. ``actor`` is the user acting, or None for the system."""
    return AuditEntry.objects.create(
        actor=actor if actor is not None and actor.is_authenticated else None,
        action=action,
        target_type=target_type,
        target_id=str(target_id),
        room_id=room_id,
        reason=reason[:500],
        detail=detail or {},
    )
