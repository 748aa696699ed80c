"""What moderation hands down to the danmaku app's send path and pages.

``install`` is called once, by ``ModerationConfig.ready``: the only place
the danmaku app learns what moderation does (see ``danmaku.hooks``).
"""

from __future__ import annotations

from danmaku import hooks
from infra.taskqueue import enqueue
from moderation.selectors import sender_block_reason, user_is_moderator
from moderation.services import filter_fast
from moderation.tasks import moderate_fallback, moderate_task


def review(danmaku_id: int) -> None:
    """Start the full rule set on a stored comment in a worker. With the
    broker down the fast filter runs here instead (terms may have changed
    since the send); nothing is raised to the send."""
    enqueue(moderate_task, danmaku_id, fallback=lambda: moderate_fallback(danmaku_id))


def install() -> None:
    hooks.install(
        hooks.ModerationHooks(
            sender_block_reason=sender_block_reason,
            screen=filter_fast,
            review=review,
            is_moderator=lambda user: user_is_moderator(user=user),
        )
    )
