"""Settings of the naive peer: what ``django-admin startproject`` writes, plus DRF and one app.

The database is the site's own, read the same way (``DATABASE_URL``, ``CONN_MAX_AGE`` and
the rest, from ``usage_site.settings``), so that the peer and the site differ in their code
only. The middleware is ``startproject``'s list, as a naive project keeps it.
"""

import os

from usage_site import settings as site

SECRET_KEY = site.SECRET_KEY
DEBUG = site.DEBUG
ALLOWED_HOSTS = site.ALLOWED_HOSTS

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "scripts.bench_peer.ingest",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "scripts.bench_peer.urls"
WSGI_APPLICATION = "scripts.bench_peer.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
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

DATABASES = {"default": site.DATABASES["default"]}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"

# No authentication, so every record belongs to one user: the bench's own.
PEER_OWNER_ID = int(os.environ.get("BENCH_PEER_OWNER_ID", "1"))
