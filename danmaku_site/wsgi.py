"""The WSGI application, and ``serve()``: the application as a server process runs it.

gunicorn (``wsgi_app`` in gunicorn.conf.py) and granian (deploy/granian-pull.sh)
load ``serve()``, in every worker after the fork: it starts the process's
background jobs (``infra.jobs``; which ones depends on DANMAKU_ROLE) and
returns ``application``. Anything else that imports this module, the test
suite included, gets the application without any thread started.
"""

import gc
import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "danmaku_site.settings")

django_application = get_wsgi_application()

from django.conf import settings  # noqa: E402

from danmaku import runtime  # noqa: E402
from infra import dbwatchdog, jobs, servedby  # noqa: E402

# Web processes bound every database query (see infra.dbwatchdog).
dbwatchdog.install()

# Pull nodes answer most pulls before Django (DANMAKU_PULL_FAST_PATH), send
# nodes bearer-token sends (DANMAKU_SEND_FAST_PATH).
application = runtime.wrap_fast_path(django_application)
if settings.DANMAKU_ROLE in ("all", "send"):
    from danmaku_site.replayfastpath import ReplayFastPath

    # Replay reads a node has ready (built segments, a broadcast's answer of the last second).
    application = ReplayFastPath(application)
if settings.DANMAKU_SEND_FAST_PATH and settings.DANMAKU_ROLE in ("all", "send"):
    from danmaku_site.sendfastpath import SendFastPath

    # A send node's pull worker answers sends on its loop (SendFastPath.loop_answers_sends).
    application = SendFastPath(
        application, served_by=servedby.enabled(), loop_answers_sends=settings.DANMAKU_ROLE == "send"
    )

# Load the URL configuration (the API modules and their schemas) now rather
# than on the first request, then move everything loaded so far out of the
# cyclic garbage collector's reach. It lives as long as the process, and a
# full collection walked all of it with the GIL held: 30-100 ms pauses that
# were the pull's p99 on a node holding 1,000 rooms. Each server imports
# this module in every worker (no preload), so each worker freezes its own.
from django.urls import get_resolver  # noqa: E402

get_resolver().url_patterns  # noqa: B018 (the access imports them)
gc.freeze()


def serve():
    """``application``, with this server process's background jobs running."""
    jobs.start(role=settings.DANMAKU_ROLE)
    return application
