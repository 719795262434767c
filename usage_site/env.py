"""Typed readers for the environment variables that configure the site.

Each helper returns a default when the variable is unset and raises
``ImproperlyConfigured`` when it is set to something it cannot read, so a typo in
production fails at start-up instead of silently falling back.
"""

import math
import os
from urllib.parse import urlsplit

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool = False) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ImproperlyConfigured(
        f"{name} must be one of 1/0, true/false, yes/no, on/off; got {raw!r}"
    )


def env_int(name: str, default: int, *, minimum: int | None = None) -> int:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw.strip())
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be an integer; got {raw!r}") from None
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum}; got {value}")
    return value


def env_float(name: str, default: float, *, minimum: float | None = None) -> float:
    """A number of seconds or similar: ``3``, ``0.5``."""
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw.strip())
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a number; got {raw!r}") from None
    if not math.isfinite(value):
        raise ImproperlyConfigured(f"{name} must be a finite number; got {raw!r}")
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum}; got {value}")
    return value


def env_list(name: str, default: list[str] | None = None) -> list[str]:
    """A comma-separated list; blank items are dropped."""
    raw = os.environ.get(name)
    if raw is None:
        return list(default or [])
    return [item.strip() for item in raw.split(",") if item.strip()]


_RATE_PERIODS = ("s", "sec", "m", "min", "h", "hour", "d", "day")


def env_rate(name: str, default: str) -> str:
    """A throttle rate as REST framework reads it: ``600/min``, ``20/s``, ``5000/day``."""
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    count, _, period = raw.strip().partition("/")
    if not (count.isascii() and count.isdigit() and int(count) > 0 and period in _RATE_PERIODS):
        raise ImproperlyConfigured(
            f"{name} must look like 600/min (per s, min, hour or day); got {raw!r}"
        )
    return f"{int(count)}/{period}"


# The keys of a DATABASES entry that a URL gives, by scheme. dj-database-url also returns
# CONN_MAX_AGE and others, which settings.py sets from their own variables.
_SERVER_KEYS = ("ENGINE", "NAME", "USER", "PASSWORD", "HOST", "PORT", "OPTIONS")
_DATABASE_KEYS = {
    "sqlite": ("ENGINE", "NAME"),
    "postgres": _SERVER_KEYS,
    "postgresql": _SERVER_KEYS,
}


def database_from_url(url: str, variable: str = "DATABASE_URL") -> dict:
    """``sqlite:///path`` or ``postgres://user:pass@host:port/name?opt=v`` as a DATABASES entry.

    dj-database-url reads the URL; this refuses what it would read differently from what
    was meant. ``variable`` names the setting in error messages, which never repeat the
    URL's password.
    """
    parts = urlsplit(url)
    # dj-database-url knows MySQL, Oracle and more, but only these two have a driver here.
    if parts.scheme not in _DATABASE_KEYS:
        raise ImproperlyConfigured(
            f"{variable} must start with sqlite:// or postgres://; got {parts.scheme or 'none'}"
        )
    # sqlite:///relative.db and sqlite:////absolute/path.db. dj-database-url would take a
    # missing path for an in-memory database, empty again on every new connection.
    if parts.scheme == "sqlite" and not (parts.path.startswith("/") and parts.path[1:]):
        raise ImproperlyConfigured(f"{variable} has no SQLite file path: {url!r}")
    try:
        config = dj_database_url.parse(url)
    except ValueError:  # its message names no part of the URL; keep it that way
        raise ImproperlyConfigured(
            f"{variable} is not a URL that can be read (a port that is not a number, or a "
            "password with characters to percent-encode?)"
        ) from None
    if not config["NAME"]:
        raise ImproperlyConfigured(f"{variable} has no database name")
    config.setdefault("OPTIONS", {})  # dj-database-url leaves out empty OPTIONS
    config["PORT"] = str(config["PORT"])
    return {key: config[key] for key in _DATABASE_KEYS[parts.scheme]}


_REDIS_SCHEMES = ("redis", "rediss", "unix")


def env_redis_url(name: str) -> str:
    """A Redis server as redis-py reads it, or ``""`` when unset.

    ``redis://[:password@]host[:port][/db]``, ``rediss://`` for TLS, or
    ``unix:///path/to/redis.sock``. Errors never repeat the URL: it may hold a password.
    """
    raw = os.environ.get(name, "").strip()
    if not raw:
        return ""
    parts = urlsplit(raw)
    try:
        parts.port  # noqa: B018 - reading it is the check: a port that is not a number raises
    except ValueError:
        raise ImproperlyConfigured(f"{name} has a port that is not a number") from None
    if parts.scheme not in _REDIS_SCHEMES:
        raise ImproperlyConfigured(
            f"{name} must start with redis://, rediss:// or unix://; got {parts.scheme or 'none'}"
        )
    if parts.scheme == "unix":
        if not parts.path:
            raise ImproperlyConfigured(f"{name} has no socket path")
        return raw
    if not parts.hostname:
        raise ImproperlyConfigured(f"{name} has no host name")
    database = parts.path.strip("/")
    if database and not (database.isascii() and database.isdigit()):
        raise ImproperlyConfigured(f"{name} must end with a database number, like /0")
    return raw


def env_currency(name: str, default: str) -> str:
    """An ISO 4217 currency code (``USD``, ``EUR``, ``JPY``), as Babel's CLDR data knows it."""
    # Imported here: settings read this once, and nothing else of Babel's is needed then.
    from babel.numbers import is_currency

    value = os.environ.get(name, default).strip()
    if not is_currency(value):
        raise ImproperlyConfigured(
            f"{name} must be an ISO 4217 currency code in capitals, such as USD; got {value!r}"
        )
    return value
