"""Login throttling per account (danmaku_site.logins, django-axes).

Behind nginx every login comes from one address, so the app counts failures
per account: after the limit that account's logins (the site's page and the
admin's) get a 429 saying how long, while other accounts log in as usual.
The count lives in the database, so it holds across processes: the last test
runs a real gunicorn with two workers on PostgreSQL and Redis.
"""

from __future__ import annotations

import contextlib
import re
import uuid
from datetime import timedelta

import pytest
import redis
import requests
from django.contrib.auth import authenticate, get_user_model

from harness import local
from harness.services import postgres_database, require_postgres, require_redis

LIMIT = 3
PASSWORD = "pw-for-tests-only"
LOCKED_MESSAGE = "This account is locked after 3 failed logins: try again in 15 minutes."
REQUEST_TIMEOUT_SECONDS = 30


@pytest.fixture(autouse=True)
def _throttle(settings):
    settings.AXES_FAILURE_LIMIT = LIMIT
    settings.AXES_COOLOFF_TIME = timedelta(minutes=15)


@pytest.fixture
def staff(db):
    return get_user_model().objects.create_superuser("boss", password=PASSWORD)


def login(client, username: str, password: str, path: str = "/accounts/login/"):
    return client.post(path, {"username": username, "password": password})


@pytest.mark.parametrize("path", ["/accounts/login/", "/admin/login/"])
def test_an_account_is_locked_after_the_failure_limit_even_for_the_right_password(client, staff, path):
    failures = [login(client, "boss", "wrong", path) for _ in range(LIMIT)]
    locked = login(client, "boss", PASSWORD, path)

    assert [f.status_code for f in failures[:-1]] == [200] * (LIMIT - 1)
    # The failure that reaches the limit already says so.
    assert failures[-1].status_code == 429
    assert locked.status_code == 429
    assert LOCKED_MESSAGE in locked.content.decode()
    assert locked["Retry-After"] == str(15 * 60)
    assert "Content-Security-Policy" in locked
    assert "_auth_user_id" not in client.session


def test_the_lock_is_per_account_not_per_address(client, staff, user):
    for _ in range(LIMIT):
        login(client, "boss", "wrong")

    other = login(client, "viewer", PASSWORD)

    assert other.status_code == 302
    assert client.session["_auth_user_id"] == str(user.pk)


def test_a_successful_login_forgets_earlier_failures(client, staff):
    for _ in range(LIMIT - 1):
        assert login(client, "boss", "wrong").status_code == 200
    assert login(client, "boss", PASSWORD).status_code == 302
    client.logout()

    again = [login(client, "boss", "wrong").status_code for _ in range(LIMIT - 1)]

    assert again == [200] * (LIMIT - 1)


def test_the_lock_ends_after_the_cool_off(client, staff, settings):
    for _ in range(LIMIT):
        login(client, "boss", "wrong")
    assert login(client, "boss", PASSWORD).status_code == 429

    # As if the cool-off had passed since the last counted failure.
    settings.AXES_COOLOFF_TIME = timedelta(0)

    assert login(client, "boss", PASSWORD).status_code == 302


def test_attempts_while_locked_do_not_extend_the_lock(client, staff):
    from axes.models import AccessAttempt

    for _ in range(LIMIT):
        login(client, "boss", "wrong")
    counted = AccessAttempt.objects.get(username="boss")

    for _ in range(5):
        assert login(client, "boss", "wrong").status_code == 429

    after = AccessAttempt.objects.get(username="boss")
    assert (after.failures_since_start, after.attempt_time) == (counted.failures_since_start, counted.attempt_time)


def test_authenticate_without_a_request_is_neither_counted_nor_refused(staff):
    # The test client's login() and a shell call authenticate() this way.
    for _ in range(LIMIT + 1):
        assert authenticate(username="boss", password="wrong") is None

    assert authenticate(username="boss", password=PASSWORD) == staff


def _csrf_login(session: requests.Session, base_url: str, username: str, password: str) -> requests.Response:
    form = session.get(f"{base_url}/accounts/login/", timeout=REQUEST_TIMEOUT_SECONDS)
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form.text)[1]
    return session.post(
        f"{base_url}/accounts/login/",
        data={"username": username, "password": password, "csrfmiddlewaretoken": token},
        headers={"Referer": f"{base_url}/accounts/login/"},
        allow_redirects=False,
        timeout=REQUEST_TIMEOUT_SECONDS,
    )


def _forget_redis_keys(url: str, prefix: str) -> None:
    client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
    try:
        keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


@pytest.mark.slow
def test_the_limit_holds_across_nodes_on_postgresql_and_redis(tmp_path):
    """Failures on one node lock the account on the other: two gunicorns over
    one PostgreSQL database, with Redis (the production setup)."""
    require_postgres()
    redis_url = require_redis()
    prefix = f"logins-{uuid.uuid4().hex}"
    with contextlib.ExitStack() as stack:
        stack.callback(_forget_redis_keys, redis_url, prefix)
        services = {
            "DATABASE_URL": stack.enter_context(postgres_database()),
            "REDIS_URL": redis_url,
            "DANMAKU_REDIS_PREFIX": prefix,
            "DJANGO_SECRET_KEY": "logins-test-only-" + "x" * 40,
            "DANMAKU_LOGIN_FAILURE_LIMIT": str(LIMIT),
            "GUNICORN_WORKERS": "1",
            # Plain HTTP here: production's Secure cookies would never come back.
            "DJANGO_SECURE_COOKIES": "0",
        }
        setup = local.environment(tmp_path, **services)
        local.manage(setup, "migrate", "--noinput")
        local.manage(
            setup,
            "shell",
            "-c",
            "from django.contrib.auth import get_user_model\n"
            f"get_user_model().objects.create_user('boss', password={PASSWORD!r})\n"
            f"get_user_model().objects.create_user('viewer', password={PASSWORD!r})",
        )
        nodes = []
        for name in ("a", "b"):
            var_dir = tmp_path / name
            var_dir.mkdir()
            env = local.environment(var_dir, DANMAKU_BIND=f"127.0.0.1:{local.free_port()}", **services)
            nodes.append(stack.enter_context(local.gunicorn_over(env, var_dir / "gunicorn.log")))
        a, b = nodes

        failures = [_csrf_login(requests.Session(), (a, b)[n % 2].base_url, "boss", "wrong") for n in range(LIMIT)]
        locked = [_csrf_login(requests.Session(), node.base_url, "boss", PASSWORD) for node in nodes]
        other = _csrf_login(requests.Session(), b.base_url, "viewer", PASSWORD)

        assert [r.status_code for r in failures] == [200] * (LIMIT - 1) + [429], (a.log_tail(), b.log_tail())
        assert [r.status_code for r in locked] == [429, 429]
        assert "try again in 15 minutes" in locked[1].text
        assert other.status_code == 302
