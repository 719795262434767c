"""The management commands: create_api_token, create_demo_account and seed_demo."""

import os
import re
import shlex
import subprocess
import sys
from datetime import timedelta
from decimal import Decimal
from io import StringIO
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.utils import timezone
from rest_framework.test import APIClient

from tests.conftest import make_record, post_usage
from usage.costs import summarize_with_costs
from usage.models import ApiToken, ModelPrice, UsageRecord
from usage.summary import parse_range, summarize

PROJECT_DIR = Path(__file__).resolve().parent.parent
RAW_TOKEN = re.compile(r"^usg_[A-Za-z0-9_-]{51}$")  # 8-character prefix + 43-character secret
RECORD = {"modelName": "Stable Diffusion", "imageCount": 4}


def run(*args: str) -> str:
    stdout = StringIO()
    call_command(*args, stdout=stdout, stderr=StringIO())
    return stdout.getvalue()


def api_with(raw: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    return client


def field(output: str, label: str) -> str:
    """The value on the demo account's ``  label   value`` line."""
    (line,) = [line for line in output.splitlines() if line.startswith(f"  {label} ")]
    return line[len(label) + 2 :].strip()


def test_create_api_token_prints_the_raw_token_alone_on_the_last_line(owner):
    output = run("create_api_token", "alice", "--name", "Work laptop")

    last_line = output.splitlines()[-1]
    assert RAW_TOKEN.match(last_line)


def test_created_token_authenticates_as_its_user(owner):
    raw = run("create_api_token", "alice", "--name", "Work laptop").splitlines()[-1]

    response = post_usage(api_with(raw), RECORD)

    assert response.status_code == 201
    assert owner.usage_records.get().model == "Stable Diffusion"


def test_created_token_is_stored_by_hash_only_under_its_name(owner):
    raw = run("create_api_token", "alice", "--name", "Work laptop").splitlines()[-1]

    token = ApiToken.objects.get(owner=owner)
    secret = raw[len("usg_") + 8 :]
    stored = [str(value) for value in ApiToken.objects.filter(pk=token.pk).values().get().values()]
    assert token.name == "Work laptop"
    assert raw.startswith(token.display_prefix)
    assert not [value for value in stored if raw in value or secret in value]


def test_create_api_token_for_an_unknown_user_names_the_user(db):
    with pytest.raises(CommandError, match="nobody"):
        run("create_api_token", "nobody")

    assert not ApiToken.objects.exists()


@pytest.mark.slow
def test_create_api_token_for_an_unknown_user_fails_from_the_command_line(tmp_path):
    env = {
        **os.environ,
        "SECRET_KEY": "test-secret",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'x.sqlite3'}",
    }

    def manage(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=PROJECT_DIR,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    assert manage("migrate", "-v0").returncode == 0

    result = manage("create_api_token", "nobody")

    assert result.returncode != 0
    assert "No user named 'nobody'" in result.stderr
    assert "usg_" not in result.stdout


def test_demo_account_is_created_with_a_working_password_and_token(db):
    output = run("create_demo_account")

    user = get_user_model().objects.get()
    raw = field(output, "API token")
    assert user.username == "demo"
    assert user.check_password(field(output, "password"))
    assert RAW_TOKEN.match(raw)
    assert ApiToken.objects.get().owner == user
    assert post_usage(api_with(raw), RECORD).status_code == 201


def test_demo_account_output_has_a_curl_command_that_posts_a_record(db):
    output = run("create_demo_account", "--url", "http://testserver")

    # The curl command spans lines joined by backslashes; read it the way a shell would.
    command = output[output.index("  curl ") :].split("\n\n")[0].replace("\\\n", "")
    argv = shlex.split(command)
    assert argv[:5] == ["curl", "-sS", "-X", "POST", "http://testserver/api/model-usage"]
    headers = dict(argv[i + 1].split(": ", 1) for i, arg in enumerate(argv) if arg == "-H")
    body = argv[argv.index("-d") + 1]
    response = api_with(headers["Authorization"].removeprefix("Bearer ")).post(
        "/api/model-usage", data=body, content_type=headers["Content-Type"]
    )
    assert response.status_code == 201
    assert headers["Authorization"] == f"Bearer {field(output, 'API token')}"


def test_second_demo_account_run_creates_nothing_and_says_users_exist(db):
    run("create_demo_account")
    first_password = get_user_model().objects.get().password

    output = run("create_demo_account")

    assert "Users exist already" in output
    assert get_user_model().objects.count() == 1
    assert get_user_model().objects.get().password == first_password
    assert ApiToken.objects.count() == 1
    assert "usg_" not in output


def test_demo_account_is_not_created_beside_existing_users(owner):
    output = run("create_demo_account")

    assert "Users exist already" in output
    assert list(get_user_model().objects.values_list("username", flat=True)) == ["alice"]
    assert not ApiToken.objects.exists()


@pytest.mark.parametrize("name", ["", "   ", "x" * 101])
def test_create_api_token_refuses_an_empty_or_overlong_name(owner, name):
    with pytest.raises(CommandError, match="1 to 100"):
        call_command("create_api_token", "alice", "--name", name, stdout=StringIO())
    assert not ApiToken.objects.exists()


def demo_summary(user, days: int = 90) -> dict:
    return summarize(user, parse_range({"tz": "Europe/Berlin"}, default_days=days), "day")


def test_seed_demo_fills_90_days_for_every_chart(db):
    output = run("seed_demo", "--seed", "7")
    demo = get_user_model().objects.get(username="demo")
    summary = demo_summary(demo)
    assert "Created user 'demo' with password:" in output
    assert f"{summary['totals']['events']}/{summary['totals']['events']} records" in output
    assert summary["totals"]["events"] > 500
    assert len(summary["models"]) >= 5
    busy_days = {point["period"] for point in summary["series"]}
    assert len(busy_days) >= 80  # nearly every day of the 90 has usage
    assert summary["series"][-1]["period"] >= summary["periods"][-5]  # it reaches today


def test_seed_demo_again_replaces_the_demo_records_instead_of_adding(db):
    run("seed_demo", "--seed", "7")
    demo = get_user_model().objects.get(username="demo")
    first = UsageRecord.objects.filter(owner=demo).count()
    output = run("seed_demo", "--seed", "7")
    assert "Created user" not in output
    assert UsageRecord.objects.filter(owner=demo).count() == first


def test_seed_demo_if_empty_leaves_existing_records_alone(db):
    run("seed_demo", "--seed", "1", "--days", "10")
    demo = get_user_model().objects.get(username="demo")
    before = set(UsageRecord.objects.filter(owner=demo).values_list("id", flat=True))
    assert run("seed_demo", "--if-empty") == ""
    assert set(UsageRecord.objects.filter(owner=demo).values_list("id", flat=True)) == before


def test_seed_demo_leaves_other_users_alone(owner):
    make_record(owner, timezone.now())
    run("seed_demo", "--days", "5")
    assert UsageRecord.objects.filter(owner=owner).count() == 1


def test_seed_demo_prices_its_models_with_a_change_inside_a_day_and_keeps_staffs_prices(db):
    staffs = ModelPrice.objects.create(
        model="Midjourney v6",
        price_per_image=Decimal("9"),
        valid_from=timezone.now() - timedelta(days=400),
    )
    run("seed_demo", "--seed", "7", "--days", "30")
    demo = get_user_model().objects.get(username="demo")
    changes = ModelPrice.objects.filter(model="DALL-E 3").order_by("valid_from")
    assert [price.price_per_image for price in changes] == [Decimal("0.04"), Decimal("0.032")]
    assert (changes[1].valid_from.hour, changes[1].valid_from.minute) == (10, 15)
    assert list(ModelPrice.objects.filter(model="Midjourney v6")) == [staffs]
    summary = summarize_with_costs(demo, parse_range({"tz": "UTC"}, default_days=30), "day")
    assert summary["unpricedModels"] == ["Stable Diffusion 1.5"]
    assert Decimal(summary["totals"]["cost"]) > 0
    run("seed_demo", "--seed", "7", "--days", "30")  # again: no second set of prices
    assert ModelPrice.objects.filter(model="DALL-E 3").count() == 2
