"""What the danmaku app asks of moderation, handed down when Django starts.

The danmaku app sits below moderation and may not import it; the send path
and the viewer page still need four answers from it. The moderation app
installs them here, in one place (``moderation.hooks.install``, called by
``ModerationConfig.ready``). Without it, nobody is blocked or reviewed and
every text passes, which is what an installation without moderation means.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol


class Screened(Protocol):
    """The inline filter's verdict on a text, as the send path reads it."""

    # "allow", "mask", "hold" or "block".
    action: str
    # The text to store: masked spans replaced, else the text sent.
    text: str


@dataclass(frozen=True, slots=True)
class Passed:
    action: str
    text: str


@dataclass(frozen=True)
class ModerationHooks:
    # (user=, room=) -> why the user may not send in the room now, or None.
    sender_block_reason: Callable[..., str | None]
    # (text=, room_id=) -> the inline filter's verdict, before the text is stored.
    screen: Callable[..., Screened]
    # (danmaku_id, awaiting_verdict=) -> start the full check of a stored
    # comment (sooner when nobody sees it before its verdict); never raises.
    review: Callable[..., None]
    # (user) -> whether the user moderates (the viewer page links the console).
    is_moderator: Callable[[object], bool]
    # (text) -> the form in which two comments count as duplicates (merged
    # into one item by the ring's writer). Pure and quick: it runs once per
    # comment per process, on the refresher thread.
    merge_key: Callable[[str], str] = lambda text: " ".join(text.split()).casefold()


NO_MODERATION = ModerationHooks(
    sender_block_reason=lambda **_: None,
    screen=lambda *, text, room_id: Passed("allow", text),
    review=lambda danmaku_id, awaiting_verdict=False: None,
    is_moderator=lambda user: False,
)

_installed = NO_MODERATION


def install(hooks: ModerationHooks) -> None:
    global _installed
    _installed = hooks


def moderation() -> ModerationHooks:
    return _installed
