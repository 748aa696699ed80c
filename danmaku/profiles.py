"""Viewer profiles: nickname and avatar, and fetching the avatar.

``profile_update`` saves a profile and, when its avatar URL changed, starts
``fetch_avatar_task`` after the commit; with the broker down the default
avatar simply stays. ``profile_avatar_fetch`` (the task's body) downloads
and thumbnails the avatar and stores it; it is idempotent, so a redelivered
task does nothing twice. Invariant: ``avatar_thumb`` is either empty or the
thumbnail of the current ``avatar_url``, so readers need only that column
(``danmaku.identity``).
"""

from __future__ import annotations

import hashlib
import logging
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import transaction

# Modules, not names, for tasks: the task module imports this one as well.
from danmaku import avatars, tasks
from danmaku.errors import InvalidInput
from danmaku.models import ViewerProfile
from infra.taskqueue import enqueue_on_commit

logger = logging.getLogger(__name__)

THUMB_DIR = "avatars"


def profile_update(*, user, nickname: str | None = None, avatar_url: str | None = None) -> ViewerProfile:
    """Create or update ``user``'s profile; None leaves a field as it is."""
    with transaction.atomic():
        profile, _ = ViewerProfile.objects.select_for_update().get_or_create(user=user)
        fields: list[str] = []
        if nickname is not None and nickname != profile.nickname:
            profile.nickname = nickname
            fields.append("nickname")
        old_thumb = ""
        url_changed = avatar_url is not None and avatar_url != profile.avatar_url
        if url_changed:
            if avatar_url and urlsplit(avatar_url).scheme not in ("http", "https"):
                raise InvalidInput("the avatar URL must be http or https", field="avatar_url")
            old_thumb = profile.avatar_thumb.name or ""
            profile.avatar_url = avatar_url
            # The default avatar until the new one has been fetched.
            profile.avatar_thumb = ""
            profile.avatar_fetched_url = ""
            fields += ["avatar_url", "avatar_thumb", "avatar_fetched_url"]
        if not fields:
            return profile
        try:
            profile.full_clean(exclude=["user"], validate_unique=False)
        except ValidationError as exc:
            field, messages = next(iter(exc.message_dict.items()))
            raise InvalidInput(" ".join(messages), field=field) from exc
        profile.save(update_fields=fields)
        if old_thumb:
            transaction.on_commit(lambda: _delete_file(old_thumb))
        if url_changed and avatar_url:
            # Broker down: no fallback needed, the default avatar stays.
            enqueue_on_commit(tasks.fetch_avatar_task, profile.pk)
    return profile


def profile_avatar_fetch(*, profile_id: int) -> bool:
    """Fetch, thumbnail and store the profile's avatar. True when a new one was stored.

    Idempotent: nothing happens when the thumbnail of the current URL is
    already there. A bad avatar (unreachable, slow, too big, not an image)
    leaves the default avatar and logs a warning; it never raises.
    """
    profile = ViewerProfile.objects.filter(pk=profile_id).first()
    if profile is None:
        logger.info("avatar fetch: profile %s no longer exists", profile_id)
        return False
    url = profile.avatar_url
    if not url or (profile.avatar_fetched_url == url and profile.avatar_thumb):
        return False
    limits = avatars.FetchLimits(
        timeout_s=settings.DANMAKU_AVATAR_TIMEOUT_MS / 1000,
        max_bytes=settings.DANMAKU_AVATAR_MAX_BYTES,
        allow_private_hosts=settings.DANMAKU_AVATAR_ALLOW_PRIVATE_HOSTS,
    )
    try:
        png = avatars.fetch_thumbnail(
            url,
            limits=limits,
            size_px=settings.DANMAKU_AVATAR_SIZE_PX,
            max_pixels=settings.DANMAKU_AVATAR_MAX_PIXELS,
        )
    except avatars.AvatarError as exc:
        logger.warning("avatar of profile %s not usable (%s): %s; default avatar kept", profile_id, url, exc)
        return False

    # Named by content: a second run writes the same name, never a new file.
    name = f"{THUMB_DIR}/{profile_id}-{hashlib.sha256(png).hexdigest()[:16]}.png"
    if not default_storage.exists(name):
        name = default_storage.save(name, ContentFile(png))
    with transaction.atomic():
        current = ViewerProfile.objects.select_for_update().filter(pk=profile_id).first()
        stale = current is None or current.avatar_url != url
        if stale or (current.avatar_fetched_url == url and current.avatar_thumb):
            # The URL changed meanwhile, or a twin of this task got there first.
            if current is None or current.avatar_thumb.name != name:
                transaction.on_commit(lambda: _delete_file(name))
            return False
        old = current.avatar_thumb.name or ""
        current.avatar_thumb.name = name
        current.avatar_fetched_url = url
        current.save(update_fields=["avatar_thumb", "avatar_fetched_url"])
        if old and old != name:
            transaction.on_commit(lambda: _delete_file(old))
    return True


def _delete_file(name: str) -> None:
    try:
        default_storage.delete(name)
    except OSError as exc:
        logger.warning("could not delete old avatar file %s: %s", name, exc)
