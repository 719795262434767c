"""WSGI entry point of the peer, for gunicorn."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "scripts.bench_peer.settings")

application = get_wsgi_application()
