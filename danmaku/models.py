from __future__ import annotations

import hashlib
import secrets
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator, URLValidator
from django.db import models
from django.db.models import Q

from danmaku.pull.wire import MODES

WHITE = 0xFFFFFF


class Room(models.Model):
    slug = models.SlugField(max_length=50, unique=True)
    title = models.CharField(max_length=200)
    is_open = models.BooleanField(default=True, help_text="Closed rooms accept no new danmaku.")
    # https only: the pages' Content-Security-Policy allows media from https
    # hosts, and a mixed-content http video would not play on an https page.
    stream_url = models.URLField(
        blank=True,
        max_length=500,
        validators=[URLValidator(schemes=["https"])],
        help_text="An https video URL played under the danmaku; empty: an animated backdrop.",
    )

    # Throttle settings, edited by product staff. The defaults give a lively
    # screen (15+ comments per 3 s poll) without flooding weak networks.
    poll_interval_ms = models.PositiveIntegerField(
        default=3000, validators=[MinValueValidator(500), MaxValueValidator(60_000)]
    )
    quiet_interval_ms = models.PositiveIntegerField(
        default=10_000,
        validators=[MinValueValidator(500), MaxValueValidator(300_000)],
        help_text="Poll interval once the room has been quiet.",
    )
    quiet_after_seconds = models.PositiveIntegerField(
        default=30,
        validators=[MinValueValidator(1), MaxValueValidator(3600)],
        help_text="Seconds without a comment before the quiet interval applies.",
    )
    poll_multiplier = models.FloatField(
        default=1.0,
        validators=[MinValueValidator(1.0), MaxValueValidator(10.0)],
        help_text=(
            "Stretches every poll interval of the room (answers say busy); the emergency preset sets 2. "
            "Delivery control may stretch it further when the node is over its budget."
        ),
    )
    display_cap_per_second = models.PositiveIntegerField(
        default=30,
        validators=[MinValueValidator(1), MaxValueValidator(1000)],
        help_text="Comments shown per second; the rest are counted as missed.",
    )
    max_text_length = models.PositiveIntegerField(
        default=100,
        validators=[MinValueValidator(1), MaxValueValidator(500)],
        help_text="Longest comment, in characters (code points).",
    )
    user_send_interval_ms = models.PositiveIntegerField(
        default=2000,
        validators=[MaxValueValidator(3_600_000)],
        help_text="Slow mode: least time between two comments from one user. 0 turns it off.",
    )
    room_send_cap_per_second = models.PositiveIntegerField(
        default=200,
        validators=[MinValueValidator(1), MaxValueValidator(100_000)],
        help_text="Comments accepted per second for the whole room; the excess is discarded.",
    )

    class Policy(models.TextChoices):
        POST = "post", "post: publish, the full check may retract"
        PRE = "pre", "pre: sender only until the verdict"
        MANUAL = "manual", "manual: held for a moderator"

    class Fallback(models.TextChoices):
        ALLOW = "allow"
        DENY = "deny"

    moderation_policy = models.CharField(max_length=8, choices=Policy.choices, default=Policy.POST)
    pre_deadline_ms = models.PositiveIntegerField(
        default=5000,
        validators=[MinValueValidator(500), MaxValueValidator(600_000)],
        help_text="Policy pre: how long a comment waits for the full check's verdict.",
    )
    pre_fallback = models.CharField(
        max_length=8,
        choices=Fallback.choices,
        default=Fallback.ALLOW,
        help_text="Policy pre: what happens to a comment whose verdict did not come in time.",
    )
    merge_duplicates = models.BooleanField(
        default=True,
        help_text='Deliver comments with the same normalized text within 5 s as one line with a count ("233 x40").',
    )

    # Viewers' reports (moderation.reports). A reporter in good standing has
    # an account this old, this many published comments, and at most this
    # many of their reports dismissed in the last 30 days.
    report_hide_threshold = models.PositiveIntegerField(
        default=0,
        validators=[MaxValueValidator(1000)],
        help_text="Hide a comment once this many distinct reporters in good standing reported it. 0 turns it off.",
    )
    report_min_account_age_hours = models.PositiveIntegerField(
        default=24,
        validators=[MaxValueValidator(24 * 365)],
        help_text="Good standing: the reporter's account is at least this many hours old.",
    )
    report_min_published = models.PositiveIntegerField(
        default=3,
        validators=[MaxValueValidator(100_000)],
        help_text="Good standing: the reporter has at least this many published comments.",
    )
    report_max_dismissed = models.PositiveIntegerField(
        default=3,
        validators=[MaxValueValidator(1000)],
        help_text="Good standing: at most this many of the reporter's reports dismissed in the last 30 days.",
    )

    # The room's pinned notice (moderation.pins), one at a time. Carried to
    # every node with the room's settings, so pulls show it with no query.
    pinned_text = models.CharField(max_length=500, blank=True, editable=False)
    pinned_nick = models.CharField(max_length=150, blank=True, editable=False)
    # The pinned comment, if a comment was pinned (hiding it unpins).
    pinned_danmaku_id = models.BigIntegerField(null=True, blank=True, editable=False)
    # Server time in ms when the pin expires; null: nothing pinned.
    pinned_until_ms = models.BigIntegerField(null=True, blank=True, editable=False)

    # The settings the emergency preset replaced, so it can be undone.
    emergency_backup = models.JSONField(null=True, blank=True, editable=False)

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True, db_index=True)

    class Meta:
        ordering = ("slug",)

    def __str__(self) -> str:
        return self.slug


class Danmaku(models.Model):
    class Mode(models.IntegerChoices):
        SCROLL = MODES.index("scroll"), "scroll"
        TOP = MODES.index("top"), "top"
        BOTTOM = MODES.index("bottom"), "bottom"

    class Status(models.TextChoices):
        PUBLISHED = "published"
        HELD = "held"
        SENDER_ONLY = "sender_only"
        HIDDEN = "hidden"

    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="danmaku")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="danmaku")
    text = models.CharField(max_length=500)
    color = models.PositiveIntegerField(default=WHITE, validators=[MaxValueValidator(WHITE)])
    mode = models.PositiveSmallIntegerField(choices=Mode.choices, default=Mode.SCROLL)
    # Server time in ms since the epoch; decides the ring slot.
    ts_ms = models.BigIntegerField()
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PUBLISHED)
    client_id = models.CharField(max_length=64, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    # Production mode (Redis store): whether the comment, and its retraction,
    # reached the room's stream. Rows left False while Redis was down are
    # published by the refresher's sweep once it is back.
    in_stream = models.BooleanField(default=False)
    retracted_at_ms = models.BigIntegerField(null=True, blank=True)
    # When a moderator last unhid it: pulls put it back on screens that removed it.
    restored_at_ms = models.BigIntegerField(null=True, blank=True)
    retraction_in_stream = models.BooleanField(default=False)
    # Whether moderation's full check has decided the comment, or none is
    # owed any more (held for a moderator, hidden, or acted on by one). False
    # for every new row, in the database too, so an INSERT that leaves the
    # column out says so as well; rows still False a minute after their
    # timestamp are handed to the check again (moderation.reviewsweep).
    checked = models.BooleanField(default=False, db_default=False)
    # A comment sent on a broadcast's recording, at playback time
    # progress_ms; it never enters the live room's stream. Both None for a
    # live comment, whose playback time follows from ts_ms (danmaku.replay).
    broadcast = models.ForeignKey(
        "Broadcast", null=True, blank=True, on_delete=models.CASCADE, related_name="recording_comments"
    )
    progress_ms = models.PositiveIntegerField(null=True, blank=True)

    class Meta:
        verbose_name_plural = "danmaku"
        indexes = [
            models.Index(fields=("room", "ts_ms"), name="danmaku_room_ts"),
            # The moderation repeat check reads one user's latest comments in
            # a room; without it a busy room's whole minute is walked per send.
            models.Index(fields=("room", "user", "ts_ms"), name="danmaku_room_user_ts"),
            models.Index(fields=("room", "retracted_at_ms"), name="danmaku_room_retracted"),
            # Restores are rare: every refresher tick asks for the latest
            # across all rooms (no list of room ids) and finds few rows.
            models.Index(
                fields=("restored_at_ms",),
                name="danmaku_restored",
                condition=Q(restored_at_ms__isnull=False),
            ),
            models.Index(
                fields=("ts_ms",), name="danmaku_not_in_stream", condition=Q(in_stream=False, status="published")
            ),
            models.Index(fields=("ts_ms",), name="danmaku_awaiting_verdict", condition=Q(status="sender_only")),
            models.Index(
                fields=("broadcast", "progress_ms"),
                name="danmaku_recording_progress",
                condition=Q(broadcast__isnull=False),
            ),
            # Moderation's sweep for comments whose full check never ran.
            models.Index(fields=("ts_ms",), name="danmaku_unchecked", condition=Q(checked=False)),
            models.Index(
                fields=("retracted_at_ms",),
                name="danmaku_retraction_pending",
                condition=Q(retraction_in_stream=False, retracted_at_ms__isnull=False),
            ),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=("user", "client_id"), condition=~Q(client_id=""), name="danmaku_user_client_id"
            )
        ]

    def __str__(self) -> str:
        return f"{self.room_id}:{self.pk} {self.text[:40]}"


class ViewerProfile(models.Model):
    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="viewer_profile")
    nickname = models.CharField(max_length=40, blank=True)
    avatar_url = models.URLField(blank=True, help_text="Where the avatar is fetched from.")
    # The 64x64 thumbnail of avatar_url, set by the fetch_avatar task; empty
    # (default avatar) until it has been fetched and whenever avatar_url changes.
    avatar_thumb = models.ImageField(upload_to="avatars/", blank=True)
    # The avatar_url the thumbnail was made from: a redelivered task finds
    # it equal and does not fetch again.
    avatar_fetched_url = models.URLField(blank=True, editable=False)

    def __str__(self) -> str:
        return self.nickname or str(self.user)


def _hash_token(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


class ApiToken(models.Model):
    """A bearer token for apps. Only its hash is stored; the raw value is shown once."""

    PREFIX = "dmk_"

    class Scope(models.TextChoices):
        FULL = "full", "full: the whole API as its user"
        PLAYER = "player", "player: sending only, fit to embed in a page"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    key_hash = models.CharField(
        max_length=64, unique=True, editable=False, validators=[RegexValidator(r"^[0-9a-f]{64}$")]
    )
    label = models.CharField(max_length=100, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    revoked = models.BooleanField(default=False)
    # A player token sits in a third party's page, seen by every visitor: it
    # may only send, where room and broadcast say (empty: anywhere).
    scope = models.CharField(max_length=8, choices=Scope.choices, default=Scope.FULL)
    room = models.ForeignKey(
        Room, null=True, blank=True, on_delete=models.CASCADE, help_text="Player tokens: only this room."
    )
    broadcast = models.ForeignKey(
        "Broadcast",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        help_text="Player tokens: only comments on this broadcast's recording.",
    )
    expires_at = models.DateTimeField(null=True, blank=True, help_text="Empty: never.")

    def __str__(self) -> str:
        return f"{self.user} ({self.label or 'token'})"

    def clean(self) -> None:
        if self.scope != self.Scope.PLAYER and (self.room_id or self.broadcast_id):
            raise ValidationError({"scope": "only a player token is limited to a room or a broadcast"})
        if self.room_id and self.broadcast_id and self.broadcast.room_id != self.room_id:
            raise ValidationError({"broadcast": "the broadcast is in another room"})

    @classmethod
    def new_raw(cls) -> str:
        return cls.PREFIX + secrets.token_urlsafe(32)

    @classmethod
    def issue(cls, user, label: str = "", **fields) -> tuple[ApiToken, str]:
        raw = cls.new_raw()
        return cls.objects.create(user=user, key_hash=_hash_token(raw), label=label, **fields), raw

    @classmethod
    def hash(cls, raw: str) -> str:
        return _hash_token(raw)


class SendWindow(models.Model):
    """Shared counters for the send limits when no Redis is configured.

    One row per (room, user) for slow mode and one per room (user = 0) for
    the room cap; updated with conditional UPDATEs so concurrent workers
    cannot both pass a limit.
    """

    room_id = models.BigIntegerField()
    user_id = models.BigIntegerField()
    # Slow mode: ms before which this user may not send again.
    # Room cap: the second being counted.
    mark = models.BigIntegerField(default=0)
    # Room cap: sends counted in that second. Slow mode: 1 if the room cap
    # discarded the send that took the slot (its copies are answered alike).
    count = models.PositiveIntegerField(default=0)
    # Slow mode: the client_id of the send that took the slot ("" for none).
    client_id = models.CharField(max_length=64, blank=True, default="")

    class Meta:
        constraints = [models.UniqueConstraint(fields=("room_id", "user_id"), name="sendwindow_room_user")]

    def __str__(self) -> str:
        return f"room {self.room_id} user {self.user_id}: {self.mark}/{self.count}"


class CacheChange(models.Model):
    """One change to a fact the processes cache (``danmaku.changes``).

    Written in the transaction that made the change; every process reads
    the rows added since its previous read and drops what they name. Rows
    older than an hour are pruned.
    """

    # "room", "token", "user", "sanctions": which cache; "*": all of them.
    kind = models.CharField(max_length=16)
    # The cached key (a slug, a token hash, a user id); "" for every key.
    key = models.CharField(max_length=200, blank=True, default="")
    created_at = models.DateTimeField(db_index=True)

    def __str__(self) -> str:
        return f"{self.kind} {self.key or '*'} at {self.created_at}"


_HTTPS = URLValidator(schemes=["https"])
_HTTP = URLValidator(schemes=["http", "https"])


def validate_recording_url(value: str) -> None:
    """https, or (DANMAKU_RECORDING_LOOPBACK_HTTP, for tests) http on this host."""
    # Not ::1: no Content-Security-Policy source names it, so the page could not play it.
    if settings.DANMAKU_RECORDING_LOOPBACK_HTTP and urlsplit(value).hostname in ("127.0.0.1", "localhost"):
        _HTTP(value)
    else:
        _HTTPS(value)


class Broadcast(models.Model):
    """A room's live session: its comments are the room's sent between its
    start and its end, each at playback time ``ts_ms - started_at_ms``
    (server clock) plus the broadcast's ``offset_ms``."""

    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="broadcasts")
    started_at_ms = models.BigIntegerField()
    # None while live.
    ended_at_ms = models.BigIntegerField(null=True, blank=True)
    recording_url = models.URLField(
        blank=True,
        max_length=500,
        validators=[validate_recording_url],
        help_text="The recording (https); empty: the comments play over the backdrop.",
    )
    offset_ms = models.IntegerField(
        default=0,
        validators=[MinValueValidator(-86_400_000), MaxValueValidator(86_400_000)],
        help_text="Added to every live comment's playback time: positive when the recording starts before the chat.",
    )
    # Bumped by every change to the broadcast's replay segments
    # (danmaku.replay); offset_revision is its value at the last offset
    # change, which moves every comment and so changes every segment.
    revision = models.BigIntegerField(default=0, editable=False)
    offset_revision = models.BigIntegerField(default=0, editable=False)

    class Meta:
        ordering = ("-started_at_ms",)
        constraints = [
            models.UniqueConstraint(fields=("room",), condition=Q(ended_at_ms__isnull=True), name="broadcast_one_live"),
        ]

    def __str__(self) -> str:
        return f"{self.room_id}:{self.started_at_ms}"

    @property
    def live(self) -> bool:
        return self.ended_at_ms is None


class ReplaySegment(models.Model):
    """The version of one replay segment of a broadcast: the broadcast's
    revision when a comment in it last changed (danmaku.replay)."""

    broadcast = models.ForeignKey(Broadcast, on_delete=models.CASCADE, related_name="segment_versions")
    index = models.PositiveIntegerField()
    version = models.BigIntegerField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=("broadcast", "index"), name="replaysegment_broadcast_index")]

    def __str__(self) -> str:
        return f"{self.broadcast_id}/{self.index} v{self.version}"
