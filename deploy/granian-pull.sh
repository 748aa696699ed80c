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
#   GRANIAN_BACKLOG               listen backlog (4096): the connections the
#                                 kernel completes while the workers are busy
#                                 accepting, e.g. a crowd connecting at once. The
#                                 kernel caps it at net.core.somaxconn (see
#                                 deploy/README.md for a production host)
#   GRANIAN_BACKPRESSURE          connections each worker holds open at once
#                                 (the open-file limit less 1,000). granian takes
#                                 one of these slots per *connection*, not per
#                                 request, and keeps it until the client
#                                 disconnects; its default (backlog / workers,
#                                 1,024 here) let 2 workers serve about 2,000
#                                 kept-alive viewers while the rest waited in the
#                                 listen queue unanswered. Requests still run one
#                                 at a time per blocking thread.
#   GRANIAN_HTTP1_HEADER_READ_TIMEOUT
#                                 ms an idle keep-alive connection waits for its
#                                 next request (30000: longer than a quiet room's
#                                 10 s poll, which 10000 raced, so a viewer keeps
#                                 its connection between polls), and a half-sent
#                                 head at most (no Python thread waits for it
#                                 meanwhile)
#
# The open-file limit is raised to its hard limit at start: every viewer's
# connection is a file. A production host raises the hard limit (systemd
# LimitNOFILE=, /etc/security/limits.conf) to what it should hold.
#
# granian has no write deadline: a client that never reads its answer keeps
# one of GRANIAN_BACKPRESSURE's slots until it disconnects. Put nginx in
# front (deploy/nginx.conf buffers whole answers) or use gunicorn where
# clients connect directly (README, Serving pulls).
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
export GRANIAN_BACKLOG="${GRANIAN_BACKLOG:-4096}"
export GRANIAN_HTTP1_KEEP_ALIVE=true
export GRANIAN_HTTP1_HEADER_READ_TIMEOUT="${GRANIAN_HTTP1_HEADER_READ_TIMEOUT:-30000}"

# As many open files as the host allows (a soft limit of 1,024 is common).
hard_nofile="$(ulimit -H -n)"
if [ "$hard_nofile" = unlimited ]; then
    hard_nofile=1048576
fi
ulimit -S -n "$hard_nofile" 2>/dev/null || true
# The slots leave room for the listening socket, the database, logs and
# Python's own files.
nofile="$(ulimit -S -n)"
if [ "$nofile" = unlimited ]; then
    nofile=1048576
fi
if [ "$nofile" -gt 2000 ]; then
    default_backpressure=$((nofile - 1000))
else
    default_backpressure=$((nofile / 2))
fi
export GRANIAN_BACKPRESSURE="${GRANIAN_BACKPRESSURE:-$default_backpressure}"
export GRANIAN_RESPAWN_FAILED_WORKERS=true

# /metrics adds up every worker's files (as under gunicorn); a fresh
# directory per instance, so a previous run's counts are not added in.
var_dir="${DANMAKU_VAR_DIR:-./var}"
export PROMETHEUS_MULTIPROC_DIR="${PROMETHEUS_MULTIPROC_DIR:-$var_dir/prometheus-granian}"
mkdir -p "$PROMETHEUS_MULTIPROC_DIR"
rm -f "$PROMETHEUS_MULTIPROC_DIR"/*.db

exec "${GRANIAN:-.venv/bin/granian}" --factory danmaku_site.wsgi:serve
