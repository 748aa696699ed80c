#!/bin/sh
# Serve the pull role with granian (WSGI) instead of gunicorn.
#
# Same application (danmaku_site.wsgi: the pull fast path in front of
# Django, and serve() starting each worker's background jobs), same
# settings from the environment; only the HTTP server differs.
# granian parses HTTP in Rust and calls Python only to run the app, which
# is most of a pull's cost once the fast path answers it (see README,
# "Serving pulls"). Every knob below is granian's own environment variable,
# so anything set in the environment wins:
#
#   GRANIAN_HOST / GRANIAN_PORT   bind address (127.0.0.1:8000)
#   GRANIAN_WORKERS               processes, one per core (2)
#   GRANIAN_BLOCKING_THREADS      Python threads per process running the app (1):
#                                 pulls hold the GIL throughout, and a second
#                                 thread only hands it back and forth (1 thread
#                                 served ~37 % more pulls than 2 in bench/pull.py).
#                                 A room's first pull in a worker reads the
#                                 database meanwhile (ms; the query deadline
#                                 if the database hangs): set 2 to keep
#                                 answering through those
#   GRANIAN_BACKLOG               listen backlog (2048)
#   GRANIAN_HTTP1_HEADER_READ_TIMEOUT
#                                 ms an idle keep-alive connection waits for its
#                                 next request (10000: longer than the 3 s poll,
#                                 so a viewer keeps its connection between polls),
#                                 and a half-sent head at most (no Python thread
#                                 waits for it meanwhile)
#
# granian has no write deadline: a client that never reads its answer keeps
# one of GRANIAN_BACKPRESSURE's request slots (backlog / workers) until it
# disconnects. Put nginx in front (deploy/nginx.conf buffers whole answers)
# or use gunicorn where clients connect directly (README, Serving pulls).
#
#   DANMAKU_ROLE=pull DANMAKU_BIND is not used here; e.g.
#   GRANIAN_HOST=0.0.0.0 GRANIAN_PORT=8000 deploy/granian-pull.sh
set -eu
cd "$(dirname "$0")/.."

export DANMAKU_ROLE="${DANMAKU_ROLE:-pull}"
export DJANGO_SETTINGS_MODULE="${DJANGO_SETTINGS_MODULE:-danmaku_site.settings}"
export GRANIAN_INTERFACE=wsgi
export GRANIAN_HTTP="${GRANIAN_HTTP:-1}"
export GRANIAN_WEBSOCKETS=false
export GRANIAN_HOST="${GRANIAN_HOST:-127.0.0.1}"
export GRANIAN_PORT="${GRANIAN_PORT:-8000}"
export GRANIAN_WORKERS="${GRANIAN_WORKERS:-2}"
export GRANIAN_BLOCKING_THREADS="${GRANIAN_BLOCKING_THREADS:-1}"
export GRANIAN_BACKLOG="${GRANIAN_BACKLOG:-2048}"
export GRANIAN_HTTP1_KEEP_ALIVE=true
export GRANIAN_HTTP1_HEADER_READ_TIMEOUT="${GRANIAN_HTTP1_HEADER_READ_TIMEOUT:-10000}"
export GRANIAN_RESPAWN_FAILED_WORKERS=true

# /metrics adds up every worker's files (as under gunicorn); a fresh
# directory per instance, so a previous run's counts are not added in.
var_dir="${DANMAKU_VAR_DIR:-./var}"
export PROMETHEUS_MULTIPROC_DIR="${PROMETHEUS_MULTIPROC_DIR:-$var_dir/prometheus-granian}"
mkdir -p "$PROMETHEUS_MULTIPROC_DIR"
rm -f "$PROMETHEUS_MULTIPROC_DIR"/*.db

exec "${GRANIAN:-.venv/bin/granian}" --factory danmaku_site.wsgi:serve
