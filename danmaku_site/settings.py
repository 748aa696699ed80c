"""Settings, all read from environment variables (see README: Configuration).

With nothing set this is the embedded default: SQLite under ./var, the
database as the danmaku store, Celery tasks run inline.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured
from redis.backoff import NoBackoff
from redis.retry import Retry

from danmaku_site.broker import transport_options
from danmaku_site.env import env_bool, env_float, env_int, env_list, env_str
from danmaku_site.secretkey import install_secret_key

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("DANMAKU_VAR_DIR", str(BASE_DIR / "var")))
# Holds the SQLite file of the embedded default and collected static files.
(VAR_DIR / "static").mkdir(parents=True, exist_ok=True)

DEBUG = env_bool("DJANGO_DEBUG", False)
# Production mode: DATABASE_URL set (README: Production mode). Without it
# this is the embedded default.
_PRODUCTION = bool(env_str("DATABASE_URL", ""))
# Production nodes must all sign with one key, so it comes from the
# environment. The embedded default makes a random one per install under
# the var dir, never a key published in the source.
if _PRODUCTION:
    SECRET_KEY = env_str("DJANGO_SECRET_KEY")
else:
    SECRET_KEY = env_str("DJANGO_SECRET_KEY", "") or install_secret_key(VAR_DIR)
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", ["127.0.0.1", "localhost", "testserver"])
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS", [])

# -- HTTPS ----------------------------------------------------------------------
# TLS ends in front of the app (deploy/nginx.conf or a load balancer), and
# the HTTPS redirect and HSTS are that terminator's job: the pull fast path
# answers before Django's middleware, so SECURE_SSL_REDIRECT and
# SECURE_HSTS_SECONDS would cover every route but the pulls (two behaviours
# for one URL). Hence their deploy checks (W008, W004) are silenced.
SILENCED_SYSTEM_CHECKS = ["security.W004", "security.W008"]
# Session and CSRF cookies only over HTTPS, on by default in production.
# DJANGO_SECURE_COOKIES=0 is for a plain-HTTP test deployment (browsers
# would not send the cookies back, so logins would fail there).
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = env_bool("DJANGO_SECURE_COOKIES", _PRODUCTION)
# Believe X-Forwarded-Proto only when told to: only when every request
# reaches the app through a proxy that overwrites it (deploy/nginx.conf
# does), or any client could claim HTTPS. With it, HTTPS logins and
# session sends pass Django's CSRF origin check without listing the origin
# in DJANGO_CSRF_TRUSTED_ORIGINS.
if env_bool("DJANGO_TRUST_X_FORWARDED_PROTO", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "ninja",
    "danmaku",
    "moderation",
]

# What this process serves, so pulls and sends can be deployed apart: "pull"
# (the viewers' GET only; no admin, no pages), "send" (the POST, admin and
# pages) or "all". /healthz, /readyz and /metrics are served by every role.
DANMAKU_ROLES = ("all", "pull", "send")
DANMAKU_ROLE = env_str("DANMAKU_ROLE", "all").strip().lower()
if DANMAKU_ROLE not in DANMAKU_ROLES:
    raise ImproperlyConfigured(f"DANMAKU_ROLE must be one of {', '.join(DANMAKU_ROLES)}, got {DANMAKU_ROLE!r}")

MIDDLEWARE = [
    # Outermost: counts every pull and send answer, whoever produced it.
    "danmaku_site.ops.count_api_outcomes",
    "infra.servedby.served_by",
    # Before the rest: a preflight needs no session, CSRF or auth.
    "danmaku_site.cors.cors_sends",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]
# A pull node serves anonymous GETs, probes and the API docs: no sessions,
# logins, CSRF or messages to carry (together about a quarter of Django's cost
# per pull, see bench/pull_inprocess.py). Nor the headers that only govern
# documents (framing, opener, referrer): on JSON they were ~90 bytes of every
# pull on the wire and three headers more for nginx to parse on every cache
# hit. nosniff and Content-Length stay.
MIDDLEWARE_NOT_ON_PULL_NODES = (
    "danmaku_site.cors.cors_sends",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
)
if DANMAKU_ROLE == "pull":
    MIDDLEWARE = [name for name in MIDDLEWARE if name not in MIDDLEWARE_NOT_ON_PULL_NODES]
    SECURE_REFERRER_POLICY = None
    SECURE_CROSS_ORIGIN_OPENER_POLICY = None
    # The admin app stays installed (one schema for every role) but is not
    # routed on pull nodes, so its checks for the middleware above do not
    # apply; nor do the deploy checks for the document-only headers, nor the
    # one for CSRF (W003): a pull node routes no form and nothing that logs in.
    SILENCED_SYSTEM_CHECKS += [
        "admin.E408",
        "admin.E409",
        "admin.E410",
        "security.W002",
        "security.W003",
        "security.W022",
    ]

ROOT_URLCONF = "danmaku_site.urls"
WSGI_APPLICATION = "danmaku_site.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        # The site's own pages (login); each app keeps its pages' templates.
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    "default": dj_database_url.parse(
        env_str("DATABASE_URL", f"sqlite:///{VAR_DIR / 'db.sqlite3'}"),
        conn_max_age=env_int("DATABASE_CONN_MAX_AGE_SECONDS", 60, minimum=0),
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"]["OPTIONS"] = {
        # Two gunicorn workers and their refresher threads share one file:
        # WAL lets readers run beside the writer, IMMEDIATE takes the write
        # lock up front (no upgrade deadlock), and writers wait, not fail.
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 10,
    }
    DATABASES["default"]["CONN_MAX_AGE"] = 0

# Every wait for PostgreSQL is bounded, so a database that is down or hangs
# costs a send a 503 within about two seconds, never a gunicorn thread.
# A new connection gives up after this long (libpq's minimum is 2 s).
DATABASE_CONNECT_TIMEOUT_SECONDS = env_int("DATABASE_CONNECT_TIMEOUT_SECONDS", 2, minimum=2)
# One query in a web process, at most: the session's statement_timeout, and
# a client-side deadline 250 ms later for a server that does not answer at
# all (infra.dbwatchdog). The API's queries take milliseconds; 0 turns both
# off. Commands (migrate) and Celery workers are not bound by it.
DATABASE_QUERY_TIMEOUT_MS = env_int("DATABASE_QUERY_TIMEOUT_MS", 2000, minimum=0)
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    for _option, _value in {
        "connect_timeout": DATABASE_CONNECT_TIMEOUT_SECONDS,
        # A peer that vanished without a word (network cut, host gone): TCP
        # gives up on unacknowledged data after 10 s, and an idle pooled
        # connection is probed after 10 s idle, every 5 s, 3 times.
        "tcp_user_timeout": 10_000,
        "keepalives": 1,
        "keepalives_idle": 10,
        "keepalives_interval": 5,
        "keepalives_count": 3,
    }.items():
        # Values given in DATABASE_URL's query string win.
        DATABASES["default"].setdefault("OPTIONS", {}).setdefault(_option, _value)

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
# Each app serves its own pages' scripts and styles (danmaku/static,
# moderation/static), straight from the app dirs without a collectstatic
# step in the embedded default.
WHITENOISE_USE_FINDERS = True

# Django's auth views with our own styled login page (danmaku_site.urls).
LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("DANMAKU_LOG_LEVEL", "INFO")},
}

# -- Redis ----------------------------------------------------------------------
# Set it and Redis holds the danmaku streams, the send limits and Django's
# cache; leave it empty and the database does (the embedded default).
REDIS_URL = env_str("REDIS_URL", "")
# Connect and read timeout for every Redis call: a frozen Redis costs a
# request at most this long before the fallback is taken.
REDIS_TIMEOUT_MS = env_int("REDIS_TIMEOUT_MS", 250, minimum=10)
REDIS_MAX_CONNECTIONS = env_int("REDIS_MAX_CONNECTIONS", 50, minimum=1)
# Prefix of every key the service writes, so deployments (and test runs) can
# share one Redis without meeting.
DANMAKU_REDIS_PREFIX = env_str("DANMAKU_REDIS_PREFIX", "dm")

if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": "dmc",
            "OPTIONS": {
                "SOCKET_CONNECT_TIMEOUT": REDIS_TIMEOUT_MS / 1000,
                "SOCKET_TIMEOUT": REDIS_TIMEOUT_MS / 1000,
                # A cache miss, not an error page, while Redis is down.
                "IGNORE_EXCEPTIONS": True,
                "CONNECTION_POOL_KWARGS": {
                    "retry_on_timeout": False,
                    # redis-py retries 3 times with backoff by default.
                    "retry": Retry(NoBackoff(), 0),
                    "max_connections": REDIS_MAX_CONNECTIONS,
                },
            },
        }
    }
    DJANGO_REDIS_LOG_IGNORED_EXCEPTIONS = True
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "danmaku"}}

# -- Celery -------------------------------------------------------------------
# redis://host:6379/1 in production (amqp:// works too). Empty: no broker,
# tasks run inline (eager) so the embedded default needs nothing.
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", "")
CELERY_TASK_ALWAYS_EAGER = not CELERY_BROKER_URL
CELERY_TASK_IGNORE_RESULT = True
CELERY_RESULT_BACKEND = None
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
# Tasks are idempotent, so a message is acknowledged only once its task has
# run, and a worker killed mid-task gets it redelivered rather than lost.
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
# A task that hit its time limit or raised is acknowledged: no poison loop.
CELERY_TASK_ACKS_ON_FAILURE_OR_TIMEOUT = True
# With acks_late each worker process reserves just the message it runs: a
# killed worker strands no more, and a slow task does not hoard the queue.
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# The avatar fetch has a 3 s deadline; anything near these limits is stuck.
CELERY_TASK_SOFT_TIME_LIMIT = env_int("CELERY_TASK_SOFT_TIME_LIMIT_SECONDS", 20, minimum=1)
CELERY_TASK_TIME_LIMIT = env_int("CELERY_TASK_TIME_LIMIT_SECONDS", 30, minimum=2)
# With acks_late a task cut off by a lost broker connection is redelivered
# anyway; cancelling it avoids running it twice at once.
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = True
# Celery's Django fixup closes a worker's database connection before and
# after every task unless this is set: each moderation batch then opened a
# new PostgreSQL connection (a backend forked, ~7 % of the worker's CPU at
# 400 sends/s). It now closes it after this many tasks; in between Django's
# rules keep or drop it (danmaku_site.celery).
CELERY_DB_REUSE_MAX = 1000
# Workers wait for the broker at start and after an outage (their loop
# reconnects); publishing never does (below).
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True

# Publishing from a request must fail fast when the broker is stopped or
# frozen (TCP accepts, nothing answers): one connect or read costs at most
# this long, nothing is retried, and infra.taskqueue.enqueue gives up
# after DANMAKU_PUBLISH_DEADLINE_MS whatever the client library does.
DANMAKU_BROKER_TIMEOUT_MS = env_int("DANMAKU_BROKER_TIMEOUT_MS", 200, minimum=10)
DANMAKU_PUBLISH_DEADLINE_MS = env_int("DANMAKU_PUBLISH_DEADLINE_MS", 500, minimum=10)
# Redis broker: a message a worker took but never acknowledged (the worker
# died) is delivered again after this long. It must exceed the hard time
# limit, or a task still running would be handed to a second worker, and
# any countdown/ETA (retry backoff), or the waiting message is duplicated.
# kombu's default is an hour; 5 minutes bounds the delay after a crash.
DANMAKU_BROKER_VISIBILITY_TIMEOUT_SECONDS = env_int("DANMAKU_BROKER_VISIBILITY_TIMEOUT_SECONDS", 300, minimum=1)
# How often each worker looks for such messages (one ZRANGE).
DANMAKU_BROKER_RESTORE_INTERVAL_SECONDS = env_int("DANMAKU_BROKER_RESTORE_INTERVAL_SECONDS", 10, minimum=1)
if DANMAKU_BROKER_VISIBILITY_TIMEOUT_SECONDS <= CELERY_TASK_TIME_LIMIT:
    raise ImproperlyConfigured(
        "DANMAKU_BROKER_VISIBILITY_TIMEOUT_SECONDS must exceed CELERY_TASK_TIME_LIMIT_SECONDS, "
        "or a running task is redelivered to a second worker"
    )
if CELERY_TASK_SOFT_TIME_LIMIT >= CELERY_TASK_TIME_LIMIT:
    raise ImproperlyConfigured("CELERY_TASK_SOFT_TIME_LIMIT_SECONDS must be below CELERY_TASK_TIME_LIMIT_SECONDS")

_broker_timeout_s = DANMAKU_BROKER_TIMEOUT_MS / 1000
CELERY_BROKER_CONNECTION_TIMEOUT = _broker_timeout_s
CELERY_BROKER_POOL_ACQUIRE_TIMEOUT = _broker_timeout_s
CELERY_TASK_PUBLISH_RETRY = False
CELERY_TASK_PUBLISH_RETRY_POLICY = {"max_retries": 0}
CELERY_BROKER_TRANSPORT_OPTIONS = transport_options(
    CELERY_BROKER_URL,
    timeout_s=_broker_timeout_s,
    visibility_timeout_s=DANMAKU_BROKER_VISIBILITY_TIMEOUT_SECONDS,
    restore_interval_s=DANMAKU_BROKER_RESTORE_INTERVAL_SECONDS,
)

# -- Broadcasts ------------------------------------------------------------
# Recording URLs are https only. Tests (and a laptop) may turn this on to also
# accept http recordings on the loopback host (127.0.0.1, ::1, localhost).
DANMAKU_RECORDING_LOOPBACK_HTTP = env_bool("DANMAKU_RECORDING_LOOPBACK_HTTP", False)
# Origins whose pages may send through the DPlayer API (a CORS preflight),
# comma-separated; public reads answer every origin without credentials.
DANMAKU_CORS_ORIGINS = [origin for origin in env_str("DANMAKU_CORS_ORIGINS", "").split(",") if origin.strip()]

# -- Media (avatar thumbnails) ----------------------------------------------
MEDIA_ROOT = Path(env_str("DANMAKU_MEDIA_ROOT", str(VAR_DIR / "media")))
MEDIA_URL = env_str("DANMAKU_MEDIA_URL", "/media/")
# The embedded default serves MEDIA_URL itself (Django's static serve view);
# production turns this off and lets nginx or a CDN serve MEDIA_ROOT.
DANMAKU_SERVE_MEDIA = env_bool("DANMAKU_SERVE_MEDIA", True)
# One avatar download: whole-request deadline, body cap, source image cap.
DANMAKU_AVATAR_TIMEOUT_MS = env_int("DANMAKU_AVATAR_TIMEOUT_MS", 3000, minimum=100)
DANMAKU_AVATAR_MAX_BYTES = env_int("DANMAKU_AVATAR_MAX_BYTES", 2 * 1024 * 1024, minimum=1024)
# 4096 x 4096: larger sources are refused before decoding (decompression bombs).
DANMAKU_AVATAR_MAX_PIXELS = env_int("DANMAKU_AVATAR_MAX_PIXELS", 4096 * 4096, minimum=64 * 64)
DANMAKU_AVATAR_SIZE_PX = env_int("DANMAKU_AVATAR_SIZE_PX", 64, minimum=8)
# Avatar URLs come from users: by default they may not point at loopback,
# private or link-local addresses (SSRF). The tests' local server needs this.
DANMAKU_AVATAR_ALLOW_PRIVATE_HOSTS = env_bool("DANMAKU_AVATAR_ALLOW_PRIVATE_HOSTS", False)

# -- Danmaku ------------------------------------------------------------------
# Slots in each room's ring; one slot is one second of server time.
DANMAKU_WINDOW_SECONDS = env_int("DANMAKU_WINDOW_SECONDS", 60, minimum=5)
# How much recent history a client gets when it joins (or after a gap).
DANMAKU_JOIN_SECONDS = env_int("DANMAKU_JOIN_SECONDS", 3, minimum=1)
# A second is sealed this long after it ends, so sends that took their
# timestamp just before the boundary have committed by then.
DANMAKU_SEAL_LAG_MS = env_int("DANMAKU_SEAL_LAG_MS", 400, minimum=0)
# Each store read starts this far before the oldest open second, to catch
# rows that committed out of timestamp order.
DANMAKU_READ_OVERLAP_MS = env_int("DANMAKU_READ_OVERLAP_MS", 10_000, minimum=0)
# Start each process's refresher thread on its first request. The tests turn
# it off and call refresh_once() themselves.
DANMAKU_REFRESHER_AUTOSTART = env_bool("DANMAKU_REFRESHER_AUTOSTART", True)
DANMAKU_REFRESH_INTERVAL_MS = env_int("DANMAKU_REFRESH_INTERVAL_MS", 1000, minimum=50)
DANMAKU_PULL_MAX_AGE_SECONDS = env_int("DANMAKU_PULL_MAX_AGE_SECONDS", 1, minimum=0)
DANMAKU_DEGRADED_MULTIPLIER = env_float("DANMAKU_DEGRADED_MULTIPLIER", 2.0)
# Delivery control (danmaku.delivery): what one node (a gunicorn or granian
# instance, all its workers) may serve. 0: no budget.
DANMAKU_PULL_BUDGET_PER_SECOND = env_float("DANMAKU_PULL_BUDGET_PER_SECOND", 0.0, minimum=0.0)
DANMAKU_EGRESS_BUDGET_BYTES_PER_SECOND = env_float("DANMAKU_EGRESS_BUDGET_BYTES_PER_SECOND", 0.0, minimum=0.0)
# The controller stretches next_ms by at most this factor; and no answer asks
# a viewer to wait longer than DANMAKU_MAX_NEXT_MS (or the room's quiet
# interval, where that is longer), whatever the multipliers.
DANMAKU_MAX_POLL_MULTIPLIER = env_float("DANMAKU_MAX_POLL_MULTIPLIER", 5.0, minimum=1.0)
DANMAKU_MAX_NEXT_MS = env_int("DANMAKU_MAX_NEXT_MS", 30_000, minimum=1000)
# Behind deploy/nginx.conf: the UDP port on 127.0.0.1 where nginx logs every
# pull it answers (its syslog access_log; cache hits never reach the app).
# Set, the node counts those for delivery control instead of its own pulls
# (danmaku.pollfeed). 0: off, each process counts what it serves.
DANMAKU_POLL_FEED_PORT = env_int("DANMAKU_POLL_FEED_PORT", 0, minimum=0)
DANMAKU_DEFAULT_AVATAR_URL = env_str("DANMAKU_DEFAULT_AVATAR_URL", "/static/danmaku/avatar-default.svg")
# Answer GET /api/v1/rooms/<slug>/danmaku in a thin WSGI layer in front of
# Django (danmaku.pull.fastpath), from the same bytes the ninja endpoint
# would send; anything unusual still goes to Django. Off: every pull goes
# through Django and ninja (same answers, several times the CPU).
DANMAKU_PULL_FAST_PATH = env_bool("DANMAKU_PULL_FAST_PATH", True)
# Send and all nodes answer bearer-token sends in a WSGI layer before Django
# (danmaku_site.sendfastpath): half the web CPU of a send.
DANMAKU_SEND_FAST_PATH = env_bool("DANMAKU_SEND_FAST_PATH", True)
# Adds X-Served-By (host:pid) to API answers; used by the multi-worker test.
DANMAKU_SERVED_BY_HEADER = env_bool("DANMAKU_SERVED_BY_HEADER", False)
# `make run` also starts the demo sender (manage.py demo_sender), which
# fills the demo room with comments. On in the embedded default (no
# DATABASE_URL), off in production.
DANMAKU_DEMO = env_bool("DANMAKU_DEMO", not _PRODUCTION)

# -- Moderation -----------------------------------------------------------------
# What the full check does with a comment carrying a link: allow, mask, hold
# or block (a published one is retracted unless "allow").
MODERATION_LINK_ACTION = env_str("MODERATION_LINK_ACTION", "hold")

# -- Abuse limits -----------------------------------------------------------------
# Per-address limits live in nginx (deploy/nginx.conf): only it sees the
# viewer's address. Behind it every request comes from nginx, so the app's
# own bounds are per process (unknown-room lookups) and per account (logins),
# and load tests against the app from one address keep working.

# Pulls for rooms a process does not know, looked up per second (each is a
# database query that may find nothing; rooms that exist do not count). Over
# it such a pull gets a 503 with Retry-After at once, without a query.
DANMAKU_UNKNOWN_ROOM_LOOKUPS_PER_SECOND = env_int("DANMAKU_UNKNOWN_ROOM_LOOKUPS_PER_SECOND", 20, minimum=1)

# Logins (the site's page and the admin's) are throttled per account by
# django-axes: after DANMAKU_LOGIN_FAILURE_LIMIT failures the account's logins
# get a 429 until DANMAKU_LOGIN_LOCKOUT_SECONDS after the last counted one.
# Failures are counted in the database (shared by every process and node,
# with or without Redis); attempts while locked are refused without a write.
INSTALLED_APPS += ["axes"]
# Last, as axes asks: it turns a locked-out login's answer into the 429.
MIDDLEWARE += ["axes.middleware.AxesMiddleware"]
AUTHENTICATION_BACKENDS = [
    "danmaku_site.logins.LoginThrottleBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env_int("DANMAKU_LOGIN_FAILURE_LIMIT", 10, minimum=1)
AXES_COOLOFF_TIME = timedelta(seconds=env_int("DANMAKU_LOGIN_LOCKOUT_SECONDS", 900, minimum=1))
AXES_LOCKOUT_PARAMETERS = ["username"]
AXES_RESET_ON_SUCCESS = True
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False
# Successful logins are not logged to the database (one write per login).
AXES_DISABLE_ACCESS_LOG = True
# No banner in every process's and command's log at start.
AXES_VERBOSE = False
AXES_LOCKOUT_CALLABLE = "danmaku_site.logins.lockout_response"
# axes.W006 asks for the client address among the lockout parameters; here
# it is always nginx's, so locking by it would lock everyone out at once.
SILENCED_SYSTEM_CHECKS += ["axes.W006"]
