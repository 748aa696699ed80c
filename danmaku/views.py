"""Plain Django pages: the room list, the viewer page and the replay page."""

from django.conf import settings
from django.shortcuts import get_object_or_404, render
from django.views.decorators.csrf import ensure_csrf_cookie

from danmaku import hooks
from danmaku.models import Broadcast, Room
from infra.csp import PAGE_CSP, content_security_policy


@content_security_policy
def index(request):
    rooms = Room.objects.filter(is_open=True).order_by("slug")[:100]
    return render(request, "danmaku/index.html", {"rooms": rooms})


@content_security_policy
@ensure_csrf_cookie
def room_page(request, slug: str):
    room = get_object_or_404(Room, slug=slug)
    return render(
        request, "danmaku/room.html", {"room": room, "is_moderator": hooks.moderation().is_moderator(request.user)}
    )


# With DANMAKU_RECORDING_LOOPBACK_HTTP a broadcast may name an http recording
# on this host (tests serve one: harness.recording); the replay page may then
# play it.
LOOPBACK_MEDIA = "http://127.0.0.1:* http://localhost:*"


def replay_csp() -> str:
    """PAGE_CSP, with loopback media when DANMAKU_RECORDING_LOOPBACK_HTTP is on."""
    if not settings.DANMAKU_RECORDING_LOOPBACK_HTTP:
        return PAGE_CSP
    return "; ".join(
        f"{directive} {LOOPBACK_MEDIA}" if directive.startswith("media-src ") else directive
        for directive in PAGE_CSP.split("; ")
    )


@ensure_csrf_cookie
def broadcast_page(request, pk: int):
    broadcast = get_object_or_404(Broadcast.objects.select_related("room"), pk=pk)
    response = render(request, "danmaku/replay.html", {"broadcast": broadcast, "room": broadcast.room})
    response["Content-Security-Policy"] = replay_csp()
    return response
