"""The management commands that hand out API tokens: create_api_token, create_demo_account."""

import os
import re
import shlex
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from rest_framework.test import APIClient

from tests.conftest import post_usage
from usage.models import ApiToken

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
