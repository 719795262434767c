"""The commands the site prints for people to paste (the demo account's set-up, the API's
description) work when pasted as shown, from the project folder, after ``./dev.py run``.

Each is run by a shell on a terminal of its own, on a fresh SQLite database, with nothing
in the environment that ``./dev.py run`` does not set: no DEBUG, no SECRET_KEY.
"""

import os
import pty
import re
import select
import sqlite3
import subprocess
from pathlib import Path

import pytest
from django.conf import settings

from tests.live_server import PROJECT

HINT = re.compile(r"DEBUG=1 \.venv/bin/python manage\.py [^`\n]+")
PASSWORD = "correct horse battery staple 42"
# What each interactive command asks, and what a person types.
ANSWERS = [
    (re.compile(rb"Username[^:]*: $"), b"root-admin\n"),
    (re.compile(rb"Email address: $"), b"admin@example.com\n"),
    (re.compile(rb"Password \(again\): $"), PASSWORD.encode() + b"\n"),
    (re.compile(rb"Password: $"), PASSWORD.encode() + b"\n"),
]
LIMIT_SECONDS = 120  # a bound for a hung prompt, not a measure of speed


def environment(database: Path) -> dict[str, str]:
    """A shell's environment after ``./dev.py run``; only the database is a fresh one."""
    unset = {"DEBUG", "SECRET_KEY", "HTTPS_ONLY", "DJANGO_SETTINGS_MODULE", "ALLOWED_HOSTS"}
    kept = {name: value for name, value in os.environ.items() if name not in unset}
    return {**kept, "DATABASE_URL": f"sqlite:///{database}", "EXTERNAL_API_URL": ""}


def in_a_terminal(line: str, env: dict[str, str]) -> tuple[int, str]:
    """``line`` run by bash on a pseudo-terminal, each known prompt answered."""
    leader, follower = pty.openpty()
    process = subprocess.Popen(
        ["bash", "-c", line],
        cwd=PROJECT,
        env=env,
        stdin=follower,
        stdout=follower,
        stderr=follower,
        close_fds=True,
    )
    os.close(follower)
    seen = b""
    try:
        while True:
            ready, _, _ = select.select([leader], [], [], LIMIT_SECONDS)
            if not ready:
                pytest.fail(f"no answer from {line!r} in {LIMIT_SECONDS} s:\n{seen.decode()}")
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # the terminal closed: the command is done
                break
            if not chunk:
                break
            seen += chunk
            for prompt, answer in ANSWERS:
                if prompt.search(seen):
                    os.write(leader, answer)
                    seen += b"\n"  # answered: the prompt is no longer the last thing seen
                    break
    finally:
        os.close(leader)
    return process.wait(LIMIT_SECONDS), seen.decode(errors="replace")


def printed_by(command: str, env: dict[str, str]) -> str:
    result = subprocess.run(
        ["bash", "-c", command], cwd=PROJECT, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def rows(database: Path, query: str) -> list[tuple]:
    with sqlite3.connect(database) as connection:
        return connection.execute(query).fetchall()


@pytest.fixture
def after_run(tmp_path) -> tuple[dict[str, str], Path]:
    """The database as ``./dev.py run`` leaves it: migrated, with the demo account."""
    database = tmp_path / "db.sqlite3"
    env = environment(database)
    assert (PROJECT / ".venv" / "bin" / "python").exists(), "./dev.py run makes .venv first"
    printed_by("DEBUG=1 .venv/bin/python manage.py migrate --no-input --verbosity 0", env)
    return env, database


def test_every_printed_command_works_when_pasted(after_run):
    env, database = after_run
    first_run = printed_by("DEBUG=1 .venv/bin/python manage.py create_demo_account", env)
    next_run = printed_by("DEBUG=1 .venv/bin/python manage.py create_demo_account", env)
    api_description = settings.SPECTACULAR_SETTINGS["DESCRIPTION"]
    hints = [*HINT.findall(first_run), *HINT.findall(next_run), *HINT.findall(api_description)]
    assert [hint.split("manage.py ")[1] for hint in hints] == [
        "createsuperuser",
        "changepassword demo",
        "create_api_token demo",
    ]
    demo_password = rows(database, "SELECT password FROM auth_user WHERE username = 'demo'")

    outputs = {}
    for hint in hints:
        status, outputs[hint] = in_a_terminal(hint, env)
        assert status == 0, outputs[hint]
        assert "Traceback" not in outputs[hint], outputs[hint]

    assert rows(database, "SELECT username FROM auth_user WHERE is_superuser") == [("root-admin",)]
    assert rows(database, "SELECT password FROM auth_user WHERE username = 'demo'") != (
        demo_password
    )
    tokens = "SELECT COUNT(*) FROM usage_apitoken t JOIN auth_user u ON t.owner_id = u.id"
    assert rows(database, f"{tokens} WHERE u.username = 'demo'") == [(2,)]
    assert re.search(r"^usg_\w+", outputs[hints[2]].strip().splitlines()[-1])
