"""Production settings as an operator gets them (issue 13, finding 5).

Settings are read once per process, so what production mode sets is asked of
real `manage.py` processes given only the README's production variables; what
those settings do to a login is then checked here through the login page.
"""

from __future__ import annotations

import json
import secrets
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.test import Client

from harness.services import require_postgres, require_redis

BASE_DIR = Path(__file__).resolve().parent.parent
# A cold Django start under a busy machine takes seconds; this only catches a hang.
MANAGE_TIMEOUT_SECONDS = 120
# What a production node sees: the five variables the README's production
# section requires, nothing else.
README_PRODUCTION_VARIABLES = {
    "DATABASE_URL",
    "REDIS_URL",
    "CELERY_BROKER_URL",
    "DJANGO_SECRET_KEY",
    "DJANGO_ALLOWED_HOSTS",
}
# Redirect and HSTS are the TLS terminator's (settings.py says why).
SILENCED_FOR_TLS_TERMINATOR = {"security.W004", "security.W008"}
PASSWORD = "pw-for-tests-only"


def production_env(**extra: str) -> dict[str, str]:
    redis_url = require_redis()
    env = {
        "DATABASE_URL": require_postgres(),
        "REDIS_URL": redis_url,
        "CELERY_BROKER_URL": redis_url.rsplit("/", 1)[0] + "/1",
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(60),
        "DJANGO_ALLOWED_HOSTS": "danmaku.example.com",
    }
    assert set(env) == README_PRODUCTION_VARIABLES
    return {**env, **extra}


def manage(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    """``manage.py`` with exactly ``env`` as its environment."""
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=MANAGE_TIMEOUT_SECONDS,
    )


def settings_of(env: dict[str, str], *names: str) -> dict:
    code = (
        "import json; from django.conf import settings as s; "
        f"print(json.dumps({{n: getattr(s, n) for n in {names!r}}}))"
    )
    done = manage(env, "shell", "-c", code)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


# -- manage.py check --deploy ----------------------------------------------------


@pytest.mark.parametrize("role", [None, "pull", "send"])
def test_check_deploy_with_the_readme_variables_warns_about_nothing(role):
    env = production_env() if role is None else production_env(DANMAKU_ROLE=role)

    done = manage(env, "check", "--deploy", "--fail-level", "WARNING")

    assert done.returncode == 0, done.stdout + done.stderr
    assert "System check identified no issues" in done.stdout, done.stdout + done.stderr
    silenced = set(settings_of(env, "SILENCED_SYSTEM_CHECKS")["SILENCED_SYSTEM_CHECKS"])
    assert silenced >= SILENCED_FOR_TLS_TERMINATOR
    if role != "pull":
        # Pull nodes silence more (no admin, pages or forms); others only
        # axes' wish to lock by address (the app sees nginx's: settings.py).
        assert silenced == {*SILENCED_FOR_TLS_TERMINATOR, "axes.W006"}


# -- Cookies and the proxy header ------------------------------------------------

COOKIE_AND_PROXY_SETTINGS = ("SESSION_COOKIE_SECURE", "CSRF_COOKIE_SECURE", "SECURE_PROXY_SSL_HEADER")


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        pytest.param({}, [True, True, None], id="production-defaults"),
        pytest.param({"DJANGO_SECURE_COOKIES": "0"}, [False, False, None], id="plain-http-test-deployment"),
        pytest.param(
            {"DJANGO_TRUST_X_FORWARDED_PROTO": "1"},
            [True, True, ["HTTP_X_FORWARDED_PROTO", "https"]],
            id="behind-the-shipped-nginx",
        ),
    ],
)
def test_production_mode_secures_cookies_and_trusts_the_proxy_header_only_when_told(extra, expected):
    got = settings_of(production_env(**extra), *COOKIE_AND_PROXY_SETTINGS)

    assert [got[name] for name in COOKIE_AND_PROXY_SETTINGS] == expected


def test_embedded_default_keeps_plain_http_cookies(tmp_path):
    got = settings_of({"DANMAKU_VAR_DIR": str(tmp_path)}, *COOKIE_AND_PROXY_SETTINGS)

    assert [got[name] for name in COOKIE_AND_PROXY_SETTINGS] == [False, False, None]


def log_in(client: Client, **headers: str):
    page = client.get("/accounts/login/", **headers)
    token = page.cookies["csrftoken"].value
    answer = client.post(
        "/accounts/login/", {"username": "viewer", "password": PASSWORD, "csrfmiddlewaretoken": token}, **headers
    )
    return page, answer


def test_login_page_sets_secure_cookies_with_production_settings(settings, user):
    production = settings_of(production_env(), *COOKIE_AND_PROXY_SETTINGS)
    for name, value in production.items():
        setattr(settings, name, value)

    page, answer = log_in(Client(enforce_csrf_checks=True))

    assert answer.status_code == 302
    assert page.cookies["csrftoken"]["secure"] is True
    assert answer.cookies["sessionid"]["secure"] is True
    assert answer.cookies["sessionid"]["httponly"] is True


@pytest.mark.parametrize(("trusted", "status"), [(False, 403), (True, 302)])
def test_forwarded_proto_counts_only_when_trusted(settings, user, trusted, status):
    # An HTTPS login through a TLS proxy: the browser's Origin is https://.
    # Trusted, the proxy's header makes it match; untrusted, a client cannot
    # claim HTTPS by sending the header (and such a login needs the origin
    # listed in DJANGO_CSRF_TRUSTED_ORIGINS).
    env = production_env(DJANGO_TRUST_X_FORWARDED_PROTO="1") if trusted else production_env()
    settings.SECURE_PROXY_SSL_HEADER = settings_of(env, "SECURE_PROXY_SSL_HEADER")["SECURE_PROXY_SSL_HEADER"]

    proxied = {"HTTP_HOST": "testserver", "HTTP_X_FORWARDED_PROTO": "https", "HTTP_ORIGIN": "https://testserver"}
    _, answer = log_in(Client(enforce_csrf_checks=True), **proxied)

    assert answer.status_code == status


# -- The embedded default's signing key ------------------------------------------


def embedded_key(var_dir: Path, **extra: str) -> str:
    return settings_of({"DANMAKU_VAR_DIR": str(var_dir), **extra}, "SECRET_KEY")["SECRET_KEY"]


def test_each_install_gets_its_own_key_and_keeps_it_across_restarts(tmp_path):
    first = embedded_key(tmp_path / "one")
    second = embedded_key(tmp_path / "two")
    first_again = embedded_key(tmp_path / "one")

    assert first != second
    assert first_again == first
    assert len(first) >= 50
    key_file = tmp_path / "one" / "secret_key"
    assert key_file.read_text().strip() == first
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600


def test_workers_starting_together_on_a_fresh_install_agree_on_one_key(tmp_path):
    var_dir = tmp_path / "var"
    code = "from django.conf import settings; print(settings.SECRET_KEY)"
    env = {"DANMAKU_VAR_DIR": str(var_dir)}
    workers = [
        subprocess.Popen(
            [sys.executable, "manage.py", "shell", "-c", code],
            cwd=BASE_DIR,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    keys = set()
    deadline = time.monotonic() + MANAGE_TIMEOUT_SECONDS
    for worker in workers:
        out, err = worker.communicate(timeout=max(1.0, deadline - time.monotonic()))
        assert worker.returncode == 0, err
        keys.add(out.strip().splitlines()[-1])

    assert len(keys) == 1
    assert (var_dir / "secret_key").read_text().strip() in keys
    # Nothing half-made left behind.
    assert sorted(path.name for path in var_dir.iterdir()) == ["secret_key", "static"]


def test_a_key_from_the_environment_wins_and_writes_nothing(tmp_path):
    key = secrets.token_urlsafe(60)

    assert embedded_key(tmp_path, DJANGO_SECRET_KEY=key) == key
    assert not (tmp_path / "secret_key").exists()
