"""gunicorn settings for the production server (``python3 dev.py serve``).

Threaded workers: a request waiting on the database or on a slow upstream holds a
thread, not a whole process, so a few slow calls cannot starve the rest.
"""

import os

bind = os.environ.get("BIND", "127.0.0.1:8000")
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
worker_class = "gthread"
threads = int(os.environ.get("WEB_THREADS", "8"))
# Restart a worker now and then so that slow leaks cannot grow without bound.
max_requests = 20000
max_requests_jitter = 2000
timeout = 60
graceful_timeout = 20
accesslog = os.environ.get("ACCESS_LOG", "-") or None
# Which requests came over HTTPS is Django's to decide (TRUST_X_FORWARDED_PROTO, settings.py),
# never gunicorn's: by default it believes X-Forwarded-Proto, -Ssl and -Protocol, and takes
# SCRIPT_NAME and PATH_INFO from headers, from any loopback or Unix-socket peer, so a client
# on the same machine, or one whose headers a proxy passed on, could claim HTTPS.
secure_scheme_headers: dict[str, str] = {}
forwarder_headers = ""
forwarded_allow_ips = ""
