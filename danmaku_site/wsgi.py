import gc
import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "danmaku_site.settings")

django_application = get_wsgi_application()

# Web processes bound every database query (see danmaku_site.db).
from danmaku_site import db, fastpath  # noqa: E402

db.install()

# Pull nodes answer most pulls before Django (DANMAKU_PULL_FAST_PATH).
application = fastpath.wrap(django_application)

# Load the URL configuration (the API modules and their schemas) now rather
# than on the first request, then move everything loaded so far out of the
# cyclic garbage collector's reach. It lives as long as the process, and a
# full collection walked all of it with the GIL held: 30-100 ms pauses that
# were the pull's p99 on a node holding 1,000 rooms. Each server imports
# this module in every worker (no preload), so each worker freezes its own.
from django.urls import get_resolver  # noqa: E402

get_resolver().url_patterns  # noqa: B018 (the access imports them)
gc.freeze()
