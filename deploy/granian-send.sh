#!/bin/sh
# The send role on granian: deploy/granian-pull.sh's server and settings,
# with DANMAKU_ROLE=send and 4 blocking threads per worker (a send waits on
# PostgreSQL and Redis; a pull never does). On this 2-core machine granian
# answered a refused send with about half of gunicorn's CPU (bench/send.py
# --server granian; docs/measurements.md). Every GRANIAN_* and DANMAKU_*
# variable of deploy/granian-pull.sh applies.
set -eu
export DANMAKU_ROLE="${DANMAKU_ROLE:-send}"
export GRANIAN_BLOCKING_THREADS="${GRANIAN_BLOCKING_THREADS:-4}"
exec sh "$(dirname "$0")/granian-pull.sh"
