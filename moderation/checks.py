"""Start-up checks: a bad moderation setting fails loudly, not at the first comment."""

from __future__ import annotations

from django.conf import settings
from django.core.checks import Error, register


@register()
def link_action_check(app_configs, **kwargs) -> list[Error]:
    from moderation.services import DEFAULT_LINK_ACTION, LINK_ACTIONS

    value = getattr(settings, "MODERATION_LINK_ACTION", DEFAULT_LINK_ACTION)
    if value in LINK_ACTIONS:
        return []
    return [
        Error(
            f"MODERATION_LINK_ACTION must be one of {', '.join(LINK_ACTIONS)}, got {value!r}",
            id="moderation.E001",
        )
    ]
