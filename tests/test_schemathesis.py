"""Property-based API tests: schemathesis fuzzes both operations from the served OpenAPI schema.

Requests go straight into the Django WSGI application (no server process), so
the test database holds the room and the sender's token. Generated paths name
unknown rooms almost always (404), so further runs pin the path to a real room:
then the send body is really validated (400s) and accepted (201), and pulls
carry cursors a client can really hold.

Every built-in check runs (no 5xx, declared status codes, content types,
response schemas, negative data rejected, auth not ignored, ...) except
``positive_data_acceptance``: the text rules (no control characters, bidi
overrides, noncharacters, blank text) cannot all be written in JSON Schema, so
schema-valid text may still earn a 400.
"""

from __future__ import annotations

import time
from collections import Counter

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance

from danmaku.pull import wire
from danmaku_site.wsgi import application

PATH = "/api/v1/rooms/{room}/danmaku"
# Per run; seven runs of this size keep the module around 20 s.
MAX_EXAMPLES = 200
EXCLUDED_CHECKS = [positive_data_acceptance]

schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", application)


@pytest.fixture(autouse=True)
def _unknown_rooms_unbounded(settings):
    # The fuzzer asks for made-up rooms faster than the per-process bound on
    # their lookups lets through (the rest would get its declared 503); the
    # bound has tests of its own (tests/danmaku/test_pull_unknown_rooms.py).
    settings.DANMAKU_UNKNOWN_ROOM_LOOKUPS_PER_SECOND = 1_000_000


def _run(strategy: st.SearchStrategy, *, headers: dict[str, str]) -> Counter:
    """Call the app with every generated case, run the checks, count the statuses."""
    statuses: Counter = Counter()

    # Function-scoped DB fixtures are shared by all examples on purpose: the
    # room and token must exist, and sends piling up is what a live room does.
    @settings(max_examples=MAX_EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(case=strategy)
    def run(case):
        response = case.call_and_validate(headers=headers, excluded_checks=EXCLUDED_CHECKS)
        statuses[response.status_code] += 1

    run()
    return statuses


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _held_cursors() -> st.SearchStrategy[str]:
    """Cursors a client can really hold: fresh, old (a gap), ahead, from another epoch."""
    now = int(time.time())
    seconds = st.sampled_from([now - 1, now - 3, now - 30, now - 3600, now + 2, now + 3600, 0])
    epochs = st.sampled_from([1, 0, 2])
    return st.builds(wire.encode_cursor, epochs, seconds)


def test_served_schema_is_valid_openapi():
    schema.validate()
    assert {"get", "post"} <= set(schema[PATH])


@pytest.mark.parametrize("method", ["GET", "POST"])
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=["positive", "negative"])
def test_any_room_gets_no_server_error_and_matches_schema(db, token, method, mode):
    operation = schema[PATH][method]

    statuses = _run(operation.as_strategy(generation_mode=mode), headers=_bearer(token))

    assert sum(statuses.values()) > 0
    assert not any(code >= 500 for code in statuses), statuses


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=["positive", "negative"])
def test_send_to_real_room_fuzzes_body_validation(room, token, mode):
    operation = schema[PATH]["POST"]

    statuses = _run(
        operation.as_strategy(generation_mode=mode, path_parameters={"room": room.slug}), headers=_bearer(token)
    )

    assert not any(code >= 500 for code in statuses), statuses
    assert statuses[400] > 0, statuses
    if mode is GenerationMode.POSITIVE:
        assert statuses[201] > 0, statuses


def test_pull_real_room_with_generated_and_held_cursors(room):
    operation = schema[PATH]["GET"]
    on_room = {"room": room.slug}
    strategy = st.one_of(
        operation.as_strategy(GenerationMode.POSITIVE, path_parameters=on_room),
        operation.as_strategy(GenerationMode.NEGATIVE, path_parameters=on_room),
        _held_cursors().flatmap(lambda cursor: operation.as_strategy(path_parameters=on_room, query={"after": cursor})),
    )

    # Uncompressed: schemathesis does not decode a gzip body before checking
    # it against the schema (any answer of 200 bytes or more is gzipped).
    statuses = _run(strategy, headers={"Accept-Encoding": "identity"})

    assert not any(code >= 500 for code in statuses), statuses
    assert statuses[200] > 0, statuses
    assert statuses[400] > 0, statuses
