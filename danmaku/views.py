"""Plain Django pages: the room list and the viewer page."""

from django.shortcuts import get_object_or_404, render
from django.views.decorators.csrf import ensure_csrf_cookie

from danmaku import hooks
from danmaku.models import Room
from infra.csp import content_security_policy


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
