"""Blocked terms under abuse, through the public interface: the send API and the admin.

A wildcard term that froze the worker matching it. The moderate task runs
inline here (no broker), so a send shows its verdict at once.
"""

from __future__ import annotations

import json
import time

import pytest

from danmaku.models import Danmaku
from moderation.services import blocked_term_create

pytestmark = pytest.mark.django_db

URL = "/api/v1/rooms/live/danmaku"


def send(client, headers, text: str):
    return client.post(URL, json.dumps({"text": text}), content_type="application/json", **headers)


def stored(response) -> Danmaku:
    assert response.status_code == 201, response.content
    return Danmaku.objects.get(pk=response.json()["id"])


def send_cpu_seconds(client, headers, text: str):
    started = time.process_time()
    response = send(client, headers, text)
    return response, time.process_time() - started


# -- wildcards ----------------------------------------------------------------------------


def test_a_wildcard_term_cannot_make_a_send_slow(client, room, auth_headers):
    blocked_term_create(term="a*a*a*a*a*a*z", kind="wildcard", action="block")
    send(client, auth_headers, "warm up")

    response, seconds = send_cpu_seconds(client, auth_headers, "z" + "a" * 23)

    assert stored(response).status == "published"
    # Python's re backtracked for seconds of CPU on this comment (the send
    # and the task each ran the pattern); CPU time, so a busy machine does
    # not count. The bound only catches backtracking.
    assert seconds < 0.5
    assert send(client, auth_headers, "a" * 23 + "z").status_code == 400
