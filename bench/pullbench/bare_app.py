"""The ceiling: a bare WSGI app answering every request with fixed bytes.

The benchmark serves it with the same server, workers and threads as the
project and compares. Its body and headers are the hot pull answer the
project itself gave (captured by the benchmark and handed over in a JSON
file named by BENCH_BARE_ANSWER), so both put the same bytes on the wire:
whatever the project costs beyond this is the cost of being the project.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Callable, Iterable

# Hop-by-hop or server-owned: the server under test writes its own.
SERVER_HEADERS = frozenset({"connection", "date", "server", "keep-alive", "transfer-encoding"})


def load_answer(path: str) -> tuple[str, list[tuple[str, str]], bytes]:
    with open(path, encoding="utf-8") as handle:
        answer = json.load(handle)
    body = base64.b64decode(answer["body_b64"])
    headers = [(name, value) for name, value in answer["headers"] if name.lower() not in SERVER_HEADERS]
    headers = [(name, value) for name, value in headers if name.lower() != "content-length"]
    headers.append(("Content-Length", str(len(body))))
    return answer["status_line"], headers, body


# Built once at import: every request shares these objects, as the project's
# precomputed answers are shared. The body in a list, as the project hands
# it over: granian sends a list in one call but walks a tuple chunk by chunk,
# which made this ceiling lower than it is.
STATUS, HEADERS, BODY = load_answer(os.environ["BENCH_BARE_ANSWER"])
CHUNKS = [BODY]


def application(environ: dict, start_response: Callable) -> Iterable[bytes]:
    start_response(STATUS, HEADERS)
    return CHUNKS
