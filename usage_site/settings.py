"""Settings for the usage site, read from environment variables.

Every variable is listed, with a one-line comment, in ``.env.example``.
"""

from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

from usage_site.env import (
    database_from_url,
    env_bool,
    env_currency,
    env_float,
    env_int,
    env_list,
    env_rate,
    env_redis_url,
    env_str,
)

BASE_DIR = Path(__file__).resolve().parent.parent

DEBUG = env_bool("DEBUG", False)

SECRET_KEY = env_str("SECRET_KEY")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off")
    SECRET_KEY = "django-insecure-development-only-key-never-use-in-production"

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])

INSTALLED_APPS = [
    "dashboard.apps.AdminConfig",  # Django's admin, its password change limited
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",  # intcomma in the ledger admin's totals
    "corsheaders",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "allauth",  # self-service accounts: sign-up, email verification, reset (docs/accounts.md)
    "allauth.account",
    "huey.contrib.djhuey",  # the background worker: manage.py run_huey (usage.tasks)
    "usage",
    "dashboard",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Before whitenoise and everything that may answer early (a 413, a 503), so that every
    # answer, static files included, carries the frame denial and the policy.
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "usage_site.security.ContentSecurityPolicyMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "usage.errors.ApiErrorMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "corsheaders.middleware.CorsMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "allauth.account.middleware.AccountMiddleware",
    # Last: no body over 1 MiB is read on any URL (413), before CSRF reads a form.
    "usage.request_body.BodyLimitMiddleware",
]

ROOT_URLCONF = "usage_site.urls"
WSGI_APPLICATION = "usage_site.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
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
    "default": database_from_url(env_str("DATABASE_URL", f"sqlite:///{BASE_DIR / 'db.sqlite3'}"))
}
# Reuse connections between requests, without Django's check (a `SELECT 1` round trip)
# before each request's first query, which cost the single-record post as much as storing
# the record. A connection the database closed (a restart) is noticed without a round trip
# and dropped before a request uses it (usage_site/db_connections.py).
DATABASES["default"]["CONN_MAX_AGE"] = env_int("DATABASE_CONN_MAX_AGE", 60, minimum=0)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = False
if DATABASES["default"]["ENGINE"].endswith("postgresql"):
    # Fail fast while the database is down, so clients get a 503 in seconds, not minutes.
    DATABASES["default"]["OPTIONS"].setdefault(
        "connect_timeout", env_int("DATABASE_CONNECT_TIMEOUT", 3, minimum=1)
    )
    # Django turns psycopg's prepared statements off (None) for connection poolers in
    # transaction mode; the site connects to PostgreSQL directly. Only the ingestion
    # statement and the summaries' are prepared (usage.dialects.postgresql): Django's own
    # queries bind their parameters on the client, which psycopg never prepares.
    DATABASES["default"]["OPTIONS"].setdefault("prepare_threshold", 5)

# The cache every server process shares: rate-limit counts, cached token usage, the
# external API's health and the replica pins. REDIS_URL: that Redis. Else, on PostgreSQL, a
# table in the database (usage_site.database_cache, whose incr is atomic), made by migrate.
# On SQLite, the single-process development server, each process's own memory.
REDIS_URL = env_redis_url("REDIS_URL")
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            # A Redis that stops answering costs a request one second, not a hung worker.
            "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 1},
        }
    }
elif DATABASES["default"]["ENGINE"].endswith("postgresql"):
    CACHES = {
        "default": {
            "BACKEND": "usage_site.database_cache.DatabaseCache",
            "LOCATION": "usage_cache",
            # Django culls a third of the entries past MAX_ENTRIES (300 by default), counters
            # included; expired entries go first.
            "OPTIONS": {"MAX_ENTRIES": 100_000},
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# A read replica for the dashboards' aggregates (docs/scaling.md): with DATABASE_REPLICA_URL,
# usage_site.routers sends rollup reads there and everything else to the primary. Without
# it, "replica" is the primary under a second name and nothing is routed to it; the tests
# switch the router on against it, and MIRROR makes it the test database there.
DATABASE_REPLICA_URL = env_str("DATABASE_REPLICA_URL")
if DATABASE_REPLICA_URL:
    if not REDIS_URL:
        raise ImproperlyConfigured(
            "DATABASE_REPLICA_URL needs REDIS_URL: a user who just wrote is pinned to the "
            "primary in the cache, and every server process must see that pin"
        )
    DATABASES["replica"] = database_from_url(DATABASE_REPLICA_URL, "DATABASE_REPLICA_URL")
    if DATABASES["replica"]["ENGINE"] != DATABASES["default"]["ENGINE"]:
        raise ImproperlyConfigured("DATABASE_REPLICA_URL must use the same engine as DATABASE_URL")
    for key in ("CONN_MAX_AGE", "CONN_HEALTH_CHECKS"):
        DATABASES["replica"][key] = DATABASES["default"][key]
    if DATABASES["replica"]["ENGINE"].endswith("postgresql"):  # the summaries it answers
        DATABASES["replica"]["OPTIONS"].setdefault("prepare_threshold", 5)
    if "connect_timeout" in DATABASES["default"].get("OPTIONS", {}):
        DATABASES["replica"]["OPTIONS"].setdefault(
            "connect_timeout", DATABASES["default"]["OPTIONS"]["connect_timeout"]
        )
    DATABASE_ROUTERS = ["usage_site.routers.ReplicaRouter"]
    MIDDLEWARE.insert(
        MIDDLEWARE.index("django.contrib.auth.middleware.AuthenticationMiddleware") + 1,
        "usage_site.routers.PrimaryPinMiddleware",
    )
else:
    DATABASES["replica"] = {
        **DATABASES["default"],
        "OPTIONS": dict(DATABASES["default"].get("OPTIONS", {})),
    }
    DATABASE_ROUTERS = []
DATABASES["replica"]["TEST"] = {"MIRROR": "default"}
# Seconds a user's reads stay on the primary after a request of theirs wrote. Keep it above
# the replica's worst lag, so that Refresh Data right after a post shows that post.
DATABASE_REPLICA_PIN_SECONDS = env_int("DATABASE_REPLICA_PIN_SECONDS", 30, minimum=1)
# Seconds of lag past which the replica reads nothing, and every read goes to the primary
# until it catches up (usage_site.replica_health). Below the pin, so that a user whose pin
# has ended reads a replica that has replayed their write.
DATABASE_REPLICA_MAX_LAG_SECONDS = env_float("DATABASE_REPLICA_MAX_LAG_SECONDS", 10.0, minimum=0.0)
if DATABASE_REPLICA_URL and DATABASE_REPLICA_MAX_LAG_SECONDS + 1 >= DATABASE_REPLICA_PIN_SECONDS:
    raise ImproperlyConfigured(
        "DATABASE_REPLICA_MAX_LAG_SECONDS must be more than a second below "
        "DATABASE_REPLICA_PIN_SECONDS: a user whose pin ends must find their writes replayed"
    )

# Seconds between folds of uncounted records into the rollups, in each server process
# (usage.folding); 0 turns the folding thread off (then run manage.py fold_rollups).
ROLLUP_FOLD_SECONDS = env_float("ROLLUP_FOLD_SECONDS", 1.0, minimum=0.0)

# Months of raw records kept before the current one (usage.retention); 0 keeps them all.
# Summaries, dashboards and daily totals read the rollups, which are never dropped.
RECORD_RETENTION_MONTHS = env_int("RECORD_RETENTION_MONTHS", 0, minimum=0)
# The one currency of every price and cost (usage.costs), shown with its usual decimals.
SITE_CURRENCY = env_currency("SITE_CURRENCY", "USD")

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# allauth's (a username or an email address), with failed sign-ins throttled on every login
# form (usage.auth).
AUTHENTICATION_BACKENDS = ["usage.auth.ThrottledModelBackend"]

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
# One date style everywhere, the admin included: "3 Dec 2026, 19:31" (24-hour times).
FORMAT_MODULE_PATH = ["usage_site.formats"]
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "django.contrib.staticfiles.storage.StaticFilesStorage"
            if DEBUG
            else "whitenoise.storage.CompressedManifestStaticFilesStorage"
        )
    },
}

# Every request body is at most 1 MiB (usage.ingest.MAX_BODY_BYTES), refused with a 413 from
# its Content-Length before it is read (usage.request_body.BodyLimitMiddleware). Django's own
# limits say the same, so that a form or file within it is parsed in memory, never spooled.
DATA_UPLOAD_MAX_MEMORY_SIZE = FILE_UPLOAD_MAX_MEMORY_SIZE = 1024 * 1024

# Cross-origin calls to /api/ from browser pages: none unless listed (docs/security.md says
# how to allow an Electron renderer). Cookies never go with them: cross-origin callers
# authenticate with a bearer token, so a listed origin still cannot act as a logged-in user.
CORS_ALLOWED_ORIGINS = env_list("CORS_ALLOWED_ORIGINS")
CORS_URLS_REGEX = r"^/api/.*$"
CORS_ALLOW_CREDENTIALS = False

# --- HTTPS and browser security headers (docs/security.md) -----------------------------------
# HTTPS_ONLY: the site is reached over HTTPS only. On by default without DEBUG; turn it off
# only for a plain-HTTP server on loopback (the tests, the benchmark).
HTTPS_ONLY = env_bool("HTTPS_ONLY", not DEBUG)
# A TLS-terminating proxy in front that sets X-Forwarded-Proto: trust that header, so that
# requests it received over HTTPS count as secure. Never set it without such a proxy: then
# any client could claim HTTPS.
TRUST_X_FORWARDED_PROTO = env_bool("TRUST_X_FORWARDED_PROTO", False)
# That proxy also redirects HTTP to HTTPS and sends Strict-Transport-Security itself, so the
# site does neither (and the deploy check is told so, below).
PROXY_ENFORCES_HTTPS = env_bool("PROXY_ENFORCES_HTTPS", False)
if PROXY_ENFORCES_HTTPS and not TRUST_X_FORWARDED_PROTO:
    raise ImproperlyConfigured(
        "PROXY_ENFORCES_HTTPS needs TRUST_X_FORWARDED_PROTO: the proxy must say which "
        "requests came over HTTPS"
    )
if TRUST_X_FORWARDED_PROTO:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = HTTPS_ONLY and not PROXY_ENFORCES_HTTPS
# Load balancers probe health over plain HTTP.
SECURE_REDIRECT_EXEMPT = [r"^api/health(/simple)?/?$"]
SECURE_HSTS_SECONDS = (
    env_int("HSTS_SECONDS", 365 * 24 * 3600, minimum=0)
    if HTTPS_ONLY and not PROXY_ENFORCES_HTTPS
    else 0
)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("HSTS_INCLUDE_SUBDOMAINS", True)
SECURE_HSTS_PRELOAD = env_bool("HSTS_PRELOAD", True)
if PROXY_ENFORCES_HTTPS:
    # W004 (no HSTS) and W008 (no redirect): the proxy does both, as configured.
    SILENCED_SYSTEM_CHECKS = ["security.W004", "security.W008"]
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = HTTPS_ONLY
SESSION_COOKIE_HTTPONLY = True
# The page reads the CSRF token from the form, never from the cookie.
CSRF_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = CSRF_COOKIE_SAMESITE = "Lax"
# Origins (https://usage.example.com) whose forms and fetches may post here, besides the site
# itself as the Host header names it: needed when a proxy rewrites the Host.
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"

# The external plugin-generation and token-usage API (docs/external-api.md). Empty means
# not configured. Without DEBUG it is empty unless set, so that a production server never
# talks to whatever answers on localhost:3001 (in development, the stand-in).
EXTERNAL_API_URL = env_str("EXTERNAL_API_URL", "http://localhost:3001" if DEBUG else "")
EXTERNAL_API_URL = EXTERNAL_API_URL.strip().rstrip("/")
if EXTERNAL_API_URL and not EXTERNAL_API_URL.startswith(("http://", "https://")):
    raise ImproperlyConfigured(
        f"EXTERNAL_API_URL must start with http:// or https://; got {EXTERNAL_API_URL!r}"
    )
EXTERNAL_API_KEY = env_str("EXTERNAL_API_KEY", "")
EXTERNAL_API_CONNECT_TIMEOUT = env_float("EXTERNAL_API_CONNECT_TIMEOUT", 3.0, minimum=0.1)
EXTERNAL_API_READ_TIMEOUT = env_float("EXTERNAL_API_READ_TIMEOUT", 10.0, minimum=0.1)
EXTERNAL_API_TIMEOUT = env_float("EXTERNAL_API_TIMEOUT", 15.0, minimum=0.1)
EXTERNAL_API_GENERATE_TIMEOUT = env_float("EXTERNAL_API_GENERATE_TIMEOUT", 90.0, minimum=0.1)
EXTERNAL_API_MAX_BYTES = env_int("EXTERNAL_API_MAX_BYTES", 1024 * 1024, minimum=1024)
EXTERNAL_API_MAX_CONCURRENT = env_int("EXTERNAL_API_MAX_CONCURRENT", 4, minimum=1)
TOKEN_USAGE_CACHE_SECONDS = env_int("TOKEN_USAGE_CACHE_SECONDS", 15, minimum=0)

# Mail (account verification and password reset, budget alerts) goes through Django's
# SMTP backend to EMAIL_HOST. Without EMAIL_HOST it is printed to the console, which is what
# `./dev.py run` wants; a production server sets EMAIL_HOST.
EMAIL_HOST = env_str("EMAIL_HOST", "")
EMAIL_PORT = env_int("EMAIL_PORT", 587, minimum=1)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
EMAIL_USE_SSL = env_bool("EMAIL_USE_SSL", False)
EMAIL_TIMEOUT = env_int("EMAIL_TIMEOUT", 10, minimum=1)
EMAIL_BACKEND = (
    "django.core.mail.backends.smtp.EmailBackend"
    if EMAIL_HOST
    else "django.core.mail.backends.console.EmailBackend"
)
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "Usage site <noreply@localhost>")
SERVER_EMAIL = DEFAULT_FROM_EMAIL

LOGIN_URL = "account_login"
# The background worker (usage.tasks, docs/costs-and-budgets.md): huey, on the Redis of
# REDIS_URL when there is one, else on a SQLite file (HUEY_FILE; default: beside the SQLite
# database, or huey.sqlite3 in the project folder). The queue holds nothing that matters:
# what to deliver is in the database, and a sweep re-enqueues whatever is due.
HUEY_FILE = env_str("HUEY_FILE", "") or str(
    Path(DATABASES["default"]["NAME"]).with_suffix(".huey.sqlite3")
    if DATABASES["default"]["ENGINE"].endswith("sqlite3")
    and DATABASES["default"]["NAME"] != ":memory:"
    else BASE_DIR / "huey.sqlite3"
)
HUEY = {
    "name": "usage-site",
    "immediate": False,  # djhuey's default follows DEBUG; the run command starts a worker
    "results": False,  # the tasks' outcomes are in the delivery log
    "consumer": {"workers": env_int("WORKER_THREADS", 4, minimum=1), "worker_type": "thread"},
}
if REDIS_URL:
    HUEY |= {"huey_class": "huey.RedisHuey", "url": REDIS_URL}
else:
    HUEY |= {"huey_class": "huey.SqliteHuey", "filename": HUEY_FILE}
# Seconds between the worker's sweeps: budgets checked, due deliveries sent. Alerts go out
# within about this long after the record that crossed the threshold arrives.
BUDGET_SWEEP_SECONDS = env_int("BUDGET_SWEEP_SECONDS", 15, minimum=1)
# Webhooks: seconds to wait for the receiver, and whether a URL may point at a loopback,
# private or link-local address (never in production: it would make the site an SSRF tool).
WEBHOOK_TIMEOUT_SECONDS = env_float("WEBHOOK_TIMEOUT_SECONDS", 10.0, minimum=0.1)
WEBHOOK_ALLOW_PRIVATE_ADDRESSES = env_bool("WEBHOOK_ALLOW_PRIVATE_ADDRESSES", False)
# Failed deliveries (email and webhook) are retried after BASE seconds, doubling each time,
# at most MAX_DELAY apart, until WINDOW seconds after the event; a worker holds a delivery
# for LEASE seconds (more than a webhook or SMTP timeout), then another may send it again.
DELIVERY_RETRY_BASE_SECONDS = env_float("DELIVERY_RETRY_BASE_SECONDS", 30.0, minimum=0.01)
DELIVERY_RETRY_MAX_DELAY_SECONDS = env_float(
    "DELIVERY_RETRY_MAX_DELAY_SECONDS", 3600.0, minimum=0.01
)
DELIVERY_RETRY_WINDOW_SECONDS = env_float("DELIVERY_RETRY_WINDOW_SECONDS", 86400.0, minimum=0.0)
DELIVERY_LEASE_SECONDS = env_float("DELIVERY_LEASE_SECONDS", 60.0, minimum=0.1)

LOGIN_REDIRECT_URL = "dashboard:index"
LOGOUT_REDIRECT_URL = "account_login"  # the admin's log-out; allauth's is set below

# --- Accounts: sign-up, email verification, password reset (docs/accounts.md) ----------------
# SIGNUP_OPEN: anyone may create an account (and must verify its email address before the
# first sign-in). Off by default in production, where an admin creates accounts; on with
# DEBUG, and `./dev.py run` turns it on.
SIGNUP_OPEN = env_bool("SIGNUP_OPEN", DEBUG)
ACCOUNT_ADAPTER = "dashboard.accounts.AccountAdapter"
ACCOUNT_LOGIN_METHODS = {"username", "email"}
ACCOUNT_SIGNUP_FIELDS = ["email*", "username*", "password1*", "password2*"]
ACCOUNT_EMAIL_VERIFICATION = "mandatory"
ACCOUNT_UNIQUE_EMAIL = True
ACCOUNT_SESSION_REMEMBER = True  # as before allauth: the session outlives the browser
# Pages and mails answer alike whether an address has an account or not.
ACCOUNT_PREVENT_ENUMERATION = True
ACCOUNT_LOGOUT_REDIRECT_URL = "account_login"
ACCOUNT_EMAIL_SUBJECT_PREFIX = "[Usage] "
# Sign-in, sign-up and reset requests are limited by the site's own atomic counters
# (usage.auth, dashboard.accounts, the THROTTLE_* rates below), so allauth's do not count
# them a second time. allauth keeps its limits on the rest: re-sending a verification mail
# (one per address per 3 minutes), the email page's changes, the reset link's page.
ACCOUNT_RATE_LIMITS = {"login": None, "login_failed": None, "signup": None, "reset_password": None}
# Where the links in the mails point: the Host of the request that sent them, which
# ALLOWED_HOSTS limits; https unless the site is plain HTTP.
ACCOUNT_DEFAULT_HTTP_PROTOCOL = "https" if HTTPS_ONLY else "http"

# Chart.js for the dashboard: the pinned release from a public CDN, checked by the browser
# against its Subresource Integrity hash. CHARTJS_URL points elsewhere (a self-hosted copy);
# set CHARTJS_INTEGRITY with it, or the page loads that copy without an integrity check.
CHARTJS_VERSION = "4.6.1"
CHARTJS_CDN_URL = f"https://cdn.jsdelivr.net/npm/chart.js@{CHARTJS_VERSION}/dist/chart.umd.min.js"
CHARTJS_CDN_INTEGRITY = "sha384-Emf5ZVIUiarAdhkgtqK+5/Z5qIvM6QoVrS+qAVtfyZVuD5lIHrac0me485+Antp0"
CHARTJS_URL = env_str("CHARTJS_URL", "")
CHARTJS_INTEGRITY = env_str("CHARTJS_INTEGRITY", "" if CHARTJS_URL else CHARTJS_CDN_INTEGRITY)
CHARTJS_URL = CHARTJS_URL or CHARTJS_CDN_URL

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "usage.auth.BearerTokenAuthentication",
        "usage.auth.CsrfSessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["usage.parsers.StrictJSONParser"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "usage.errors.api_exception_handler",
    "UNAUTHENTICATED_USER": None,
    # Limits per window, counted in the cache by usage.throttles (docs/security.md).
    "DEFAULT_THROTTLE_RATES": {
        "ingest": env_rate("THROTTLE_INGEST_RATE", "1200/min"),  # per user, all their apps
        "ingest_token": env_rate("THROTTLE_INGEST_TOKEN_RATE", "600/min"),  # per API token
        "plugin": env_rate("THROTTLE_PLUGIN_RATE", "10/min"),  # per user
        # token usage's ?refresh=1, per user read; past it, the cached copy
        "token_usage_refresh": env_rate("THROTTLE_TOKEN_REFRESH_RATE", "10/min"),
        "login": env_rate("THROTTLE_LOGIN_RATE", "10/hour"),  # failed sign-ins per account
        "login_address": env_rate("THROTTLE_LOGIN_ADDRESS_RATE", "50/hour"),  # ... per address
        "token_create": env_rate("THROTTLE_TOKEN_CREATE_RATE", "10/hour"),  # per user
        # wrong current passwords on the password-change forms, per user
        "password_change": env_rate("THROTTLE_PASSWORD_CHANGE_RATE", "5/hour"),
        # sign-up attempts per email address, and per client address
        "signup": env_rate("THROTTLE_SIGNUP_RATE", "3/hour"),
        "signup_address": env_rate("THROTTLE_SIGNUP_ADDRESS_RATE", "20/hour"),
        # password-reset requests per email address, and per client address
        "password_reset": env_rate("THROTTLE_RESET_RATE", "3/hour"),
        "password_reset_address": env_rate("THROTTLE_RESET_ADDRESS_RATE", "20/hour"),
    },
    # Client addresses come only from REMOTE_ADDR unless a trusted proxy count is configured
    # (usage.client_address).
    "NUM_PROXIES": env_int("NUM_PROXIES", 0, minimum=0),
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Usage site API",
    "DESCRIPTION": (
        "Image-generation usage records posted by desktop apps, and each user's aggregates. "
        "Authenticate with `Authorization: Bearer usg_...`. Create a token on the dashboard's "
        "API tokens page (`/dashboard/tokens/`), or, on the development site (`./dev.py run`), "
        "from the project folder: `DEBUG=1 .venv/bin/python manage.py create_api_token demo`."
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "PREPROCESSING_HOOKS": ["usage.openapi.canonical_paths"],
    "DEFAULT_GENERATOR_CLASS": "usage.openapi.SchemaGenerator",
}

LOG_LEVEL = env_str("LOG_LEVEL", "INFO").upper()
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": "WARNING"},
    "loggers": {"usage": {"handlers": ["console"], "level": LOG_LEVEL, "propagate": False}},
}
