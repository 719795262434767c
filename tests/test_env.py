"""The typed environment readers in usage_site.env, and the settings that depend on them."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from usage_site.env import (
    database_from_url,
    env_bool,
    env_currency,
    env_float,
    env_int,
    env_list,
    env_rate,
)

PROJECT_DIR = Path(__file__).resolve().parent.parent
VAR = "USAGE_TEST_VARIABLE"


@pytest.mark.parametrize("raw", ["1", "true", "True", "YES", "on", " on "])
def test_env_bool_reads_true_spellings(monkeypatch, raw):
    monkeypatch.setenv(VAR, raw)

    assert env_bool(VAR, default=False) is True


@pytest.mark.parametrize("raw", ["0", "false", "FALSE", "no", "Off", ""])
def test_env_bool_reads_false_spellings(monkeypatch, raw):
    monkeypatch.setenv(VAR, raw)

    assert env_bool(VAR, default=True) is False


@pytest.mark.parametrize("default", [True, False])
def test_env_bool_falls_back_to_the_default_when_unset(monkeypatch, default):
    monkeypatch.delenv(VAR, raising=False)

    assert env_bool(VAR, default=default) is default


def test_env_bool_refuses_anything_else_and_names_the_variable(monkeypatch):
    monkeypatch.setenv(VAR, "maybe")

    with pytest.raises(ImproperlyConfigured, match=f"{VAR}.*'maybe'"):
        env_bool(VAR)


@pytest.mark.parametrize("raw", [None, "", "   "])
def test_env_int_falls_back_to_the_default_when_unset_or_blank(monkeypatch, raw):
    if raw is None:
        monkeypatch.delenv(VAR, raising=False)
    else:
        monkeypatch.setenv(VAR, raw)

    assert env_int(VAR, 60) == 60


def test_env_int_reads_an_integer(monkeypatch):
    monkeypatch.setenv(VAR, " 42 ")

    assert env_int(VAR, 60) == 42


@pytest.mark.parametrize("raw", ["abc", "1.5", "10s"])
def test_env_int_refuses_a_non_integer(monkeypatch, raw):
    monkeypatch.setenv(VAR, raw)

    with pytest.raises(ImproperlyConfigured, match=f"{VAR} must be an integer"):
        env_int(VAR, 60)


def test_env_int_refuses_a_value_below_the_minimum(monkeypatch):
    monkeypatch.setenv(VAR, "-1")

    with pytest.raises(ImproperlyConfigured, match=f"{VAR} must be at least 0"):
        env_int(VAR, 60, minimum=0)


def test_env_int_accepts_the_minimum_itself(monkeypatch):
    monkeypatch.setenv(VAR, "0")

    assert env_int(VAR, 60, minimum=0) == 0


@pytest.mark.parametrize(("raw", "expected"), [(" 2.5 ", 2.5), ("3", 3.0), ("0.1", 0.1)])
def test_env_float_reads_a_number_of_seconds(monkeypatch, raw, expected):
    monkeypatch.setenv(VAR, raw)

    assert env_float(VAR, 9.0) == expected


@pytest.mark.parametrize("raw", ["abc", "1,5", "10s", "nan", "inf"])
def test_env_float_refuses_what_is_not_a_finite_number(monkeypatch, raw):
    monkeypatch.setenv(VAR, raw)

    with pytest.raises(ImproperlyConfigured, match=VAR):
        env_float(VAR, 9.0)


def test_env_float_refuses_a_value_below_the_minimum_and_defaults_when_blank(monkeypatch):
    monkeypatch.setenv(VAR, "0")
    with pytest.raises(ImproperlyConfigured, match=f"{VAR} must be at least 0.1"):
        env_float(VAR, 9.0, minimum=0.1)

    monkeypatch.setenv(VAR, " ")
    assert env_float(VAR, 9.0, minimum=0.1) == 9.0


def test_env_list_splits_on_commas_and_drops_blanks(monkeypatch):
    monkeypatch.setenv(VAR, " a.example, b.example,, ,c.example ,")

    assert env_list(VAR) == ["a.example", "b.example", "c.example"]


def test_env_list_set_to_blank_is_empty_not_the_default(monkeypatch):
    monkeypatch.setenv(VAR, "")

    assert env_list(VAR, ["localhost"]) == []


def test_env_list_falls_back_to_a_copy_of_the_default_when_unset(monkeypatch):
    monkeypatch.delenv(VAR, raising=False)
    default = ["localhost"]

    value = env_list(VAR, default)
    value.append("changed")

    assert value == ["localhost", "changed"]
    assert default == ["localhost"]
    assert env_list(VAR) == []


def test_sqlite_url_with_four_slashes_is_an_absolute_path():
    assert database_from_url("sqlite:////abs/path.db") == {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": "/abs/path.db",
    }


def test_sqlite_url_with_three_slashes_is_a_relative_path():
    assert database_from_url("sqlite:///rel.db") == {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": "rel.db",
    }


def test_sqlite_url_without_a_path_is_refused():
    with pytest.raises(ImproperlyConfigured, match="no SQLite file path"):
        database_from_url("sqlite://")


def test_postgres_url_is_split_into_connection_settings():
    assert database_from_url("postgres://u:p%40ss@h:5433/db?sslmode=require") == {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": "db",
        "USER": "u",
        "PASSWORD": "p@ss",
        "HOST": "h",
        "PORT": "5433",
        "OPTIONS": {"sslmode": "require"},
    }


def test_postgresql_scheme_is_read_like_postgres():
    config = database_from_url("postgresql://usage@localhost/usage")

    assert config["ENGINE"] == "django.db.backends.postgresql"
    assert (config["NAME"], config["USER"], config["PASSWORD"]) == ("usage", "usage", "")
    assert (config["HOST"], config["PORT"], config["OPTIONS"]) == ("localhost", "", {})


def test_postgres_url_without_a_database_name_is_refused():
    with pytest.raises(ImproperlyConfigured, match="no database name"):
        database_from_url("postgres://u:p@h:5432/")


def test_other_databases_are_refused():
    with pytest.raises(ImproperlyConfigured, match="mysql"):
        database_from_url("mysql://u:p@h:3306/db")


def test_a_database_url_that_cannot_be_read_is_refused_without_its_password():
    with pytest.raises(ImproperlyConfigured, match=r"^DATABASE_REPLICA_URL is not a URL") as error:
        database_from_url("postgres://u:hunter2@h:port/db", "DATABASE_REPLICA_URL")

    assert "hunter2" not in str(error.value)


def django_setup(**env: str) -> subprocess.CompletedProcess:
    """Load the settings in a fresh interpreter, with only ``env`` deciding DEBUG and the key."""
    base = {k: v for k, v in os.environ.items() if k not in ("SECRET_KEY", "DEBUG")}
    return subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        cwd=PROJECT_DIR,
        env={**base, "DJANGO_SETTINGS_MODULE": "usage_site.settings", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_settings_refuse_to_load_without_a_secret_key_when_debug_is_off():
    result = django_setup()

    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert "SECRET_KEY" in result.stderr


def test_settings_load_without_a_secret_key_in_debug_mode():
    result = django_setup(DEBUG="1")

    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("raw", "expected"), [("600/min", "600/min"), (" 20/s ", "20/s"), ("5000/day", "5000/day")]
)
def test_env_rate_reads_rest_framework_rates(monkeypatch, raw, expected):
    monkeypatch.setenv("SOME_RATE", raw)
    assert env_rate("SOME_RATE", "1/min") == expected


@pytest.mark.parametrize("raw", ["600", "600/minute-ish", "0/min", "-1/min", "abc/min", "1.5/s"])
def test_env_rate_refuses_what_rest_framework_would_misread(monkeypatch, raw):
    monkeypatch.setenv("SOME_RATE", raw)
    with pytest.raises(ImproperlyConfigured, match="SOME_RATE"):
        env_rate("SOME_RATE", "1/min")


def test_env_rate_defaults_when_unset(monkeypatch):
    monkeypatch.delenv("SOME_RATE", raising=False)
    assert env_rate("SOME_RATE", "7/hour") == "7/hour"


def external_api_url(**env: str) -> subprocess.CompletedProcess:
    """EXTERNAL_API_URL as fresh settings read it from ``env`` alone."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("EXTERNAL_API_", "DEBUG"))}
    code = "from django.conf import settings; print(repr(settings.EXTERNAL_API_URL))"
    return subprocess.run(
        [sys.executable, "-c", f"import django; django.setup(); {code}"],
        cwd=PROJECT_DIR,
        env={**base, "DJANGO_SETTINGS_MODULE": "usage_site.settings", "SECRET_KEY": "k", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_without_debug_the_external_api_is_not_configured_unless_set():
    # So that production never talks to whatever answers on localhost:3001 (the stand-in).
    assert external_api_url(DEBUG="0").stdout.strip() == "''"
    assert external_api_url(DEBUG="1").stdout.strip() == "'http://localhost:3001'"


def test_the_external_api_url_is_read_without_a_trailing_slash():
    result = external_api_url(DEBUG="0", EXTERNAL_API_URL=" https://api.example.com/v1/ ")

    assert result.stdout.strip() == "'https://api.example.com/v1'"


def test_an_external_api_url_that_is_not_http_is_refused():
    result = external_api_url(DEBUG="0", EXTERNAL_API_URL="localhost:3001")

    assert result.returncode != 0
    assert "EXTERNAL_API_URL must start with http:// or https://" in result.stderr


def test_env_currency_takes_an_iso_code_and_defaults_to_the_given_one(monkeypatch):
    monkeypatch.delenv(VAR, raising=False)
    assert env_currency(VAR, "USD") == "USD"
    monkeypatch.setenv(VAR, "EUR")
    assert env_currency(VAR, "USD") == "EUR"


@pytest.mark.parametrize("raw", ["usd", "XXQ", "", "US$", "EURO"])
def test_env_currency_refuses_anything_else_and_names_the_variable(monkeypatch, raw):
    monkeypatch.setenv(VAR, raw)
    with pytest.raises(ImproperlyConfigured, match=VAR):
        env_currency(VAR, "USD")
