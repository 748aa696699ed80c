import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "danmaku_site.settings")

django_application = get_wsgi_application()

# Web processes bound every database query (see danmaku_site.db).
from danmaku_site import db, fastpath  # noqa: E402

db.install()

# Pull nodes answer most pulls before Django (DANMAKU_PULL_FAST_PATH).
application = fastpath.wrap(django_application)
