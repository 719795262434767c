"""A production site of a test's own on the suite's PostgreSQL cluster, for the fault runs.

Runs under scripts/with_postgres.py, which tells the tests where the cluster is and how to
stop it (PGDATA, PG_BINDIR, PG_RUN_AS, PG_LOGFILE). Each run gets a database of its own on
that cluster, created and migrated here, so that pytest-django's test database is never
touched; the cluster is left running whatever happens. gunicorn runs with gunicorn.conf.py
(as ``./dev.py serve`` runs it) in a process group of its own, so that a kill takes the
master and its workers at once, and it can start again on the same port.
"""

import json
import os
import signal
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import psycopg
import pytest
from django.conf import settings

from tests.live_server import (
    GUNICORN,
    HOST,
    PROJECT,
    Server,
    free_port,
    manage,
    poll,
    site_env,
    url_of,
)

START_SECONDS = 30
PASSWORD = "load-password-1"  # of the users who sign in (prepare_site)
# The README's production server: 2 processes of 8 threads, no access log to slow it.
SERVER_ENV = {"WEB_CONCURRENCY": "2", "WEB_THREADS": "8", "ACCESS_LOG": "", "HTTPS_ONLY": "0"}
# Limits far above what the runs send, for servers whose throttles are not being measured.
UNTHROTTLED = {
    "THROTTLE_INGEST_RATE": "1000000/min",
    "THROTTLE_INGEST_TOKEN_RATE": "1000000/min",
    "THROTTLE_LOGIN_RATE": "1000/min",
    "THROTTLE_LOGIN_ADDRESS_RATE": "1000/min",
    "THROTTLE_TOKEN_CREATE_RATE": "1000/min",
    "THROTTLE_PLUGIN_RATE": "1000/min",
}


def require_cluster() -> None:
    """Skip unless the suite runs on PostgreSQL under scripts/with_postgres.py."""
    if settings.DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql":
        pytest.skip("runs production servers on a PostgreSQL cluster: not on SQLite")
    if not (os.environ.get("PGDATA") and os.environ.get("PG_BINDIR")):
        pytest.skip("PGDATA/PG_BINDIR are not set: run under scripts/with_postgres.py")


class Cluster:
    """The suite's PostgreSQL server, stopped and started with its own pg_ctl."""

    def pg_ctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        argv = [str(Path(os.environ["PG_BINDIR"]) / "pg_ctl"), "-D", os.environ["PGDATA"], *args]
        if os.environ.get("PG_RUN_AS"):
            argv = ["runuser", "-u", os.environ["PG_RUN_AS"], "--", *argv]
        # The server's user may not be able to enter this directory; the data's parent is its own.
        cwd = Path(os.environ["PGDATA"]).parent
        result = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=90)
        if check and result.returncode != 0:
            pytest.fail(f"{' '.join(argv)} failed:\n{result.stdout}{result.stderr}")
        return result

    def is_running(self) -> bool:
        return self.pg_ctl("status", check=False).returncode == 0

    def crash(self) -> None:
        """Stop at once, as a power cut would: no checkpoint, connections cut mid-query."""
        self.pg_ctl("-m", "immediate", "-w", "stop")

    def start(self) -> None:
        self.pg_ctl("-l", os.environ["PG_LOGFILE"], "-w", "-t", "60", "start")

    def ensure_running(self) -> None:
        if not self.is_running():
            self.start()


def connect(dbname: str) -> psycopg.Connection:
    db = settings.DATABASES["default"]
    return psycopg.connect(
        host=db["HOST"] or HOST,
        port=db["PORT"] or "5432",
        user=db["USER"],
        password=db["PASSWORD"] or None,
        dbname=dbname,
        autocommit=True,
        connect_timeout=10,
    )


def url_for(dbname: str) -> str:
    return url_of({**settings.DATABASES["default"], "NAME": dbname})


@contextmanager
def own_database(label: str) -> Iterator[str]:
    """A new, empty database on the cluster, dropped afterwards; its DATABASE_URL."""
    name = f"{label}_{uuid.uuid4().hex[:8]}"
    with connect("postgres") as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield url_for(name)
    finally:
        Cluster().ensure_running()
        with connect("postgres") as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


PREPARE = """
import json
from django.contrib.auth import get_user_model
from django.core.management import call_command
from usage.tokens import create_token
call_command("migrate", verbosity=0)
if %r:
    call_command("collectstatic", interactive=False, verbosity=0)
tokens = {}
for name, count in json.loads(%r).items():
    # Hashing a password takes a while by design: only the users who sign in get one.
    password = %r if name in %r else None
    user = get_user_model().objects.create_user(name, password=password)
    tokens[name] = [create_token(user, f"app {n}").raw for n in range(count)]
print(json.dumps(tokens))
"""


def prepare_site(
    database_url: str,
    tokens_per_user: dict[str, int],
    *,
    sign_in: tuple[str, ...] = (),
    pages: bool = False,
) -> dict[str, list[str]]:
    """Migrate, make users and their API tokens; each user's raw tokens.

    The users named in ``sign_in`` get the password PASSWORD. ``pages``: also collect the
    static files, whose manifest the pages need without DEBUG.
    """
    code = PREPARE % (pages, json.dumps(tokens_per_user), PASSWORD, list(sign_in))
    output = manage(database_url, "shell", "--no-imports", "-c", code)
    return json.loads(output.strip().splitlines()[-1])


@dataclass(frozen=True)
class StoredRecord:
    event_id: str | None
    model: str
    image_count: int
    occurred_at: datetime


def stored_records(database_url: str, username: str) -> list[StoredRecord]:
    """Every record stored for ``username``, read from the database itself."""
    dbname = database_url.rsplit("/", 1)[1]
    with connect(dbname) as conn:
        rows = conn.execute(
            "SELECT r.event_id, r.model, r.image_count, r.occurred_at "
            "FROM usage_usagerecord r JOIN auth_user u ON u.id = r.owner_id "
            "WHERE u.username = %s",
            [username],
        ).fetchall()
    return [StoredRecord(*row) for row in rows]


@dataclass
class Gunicorn(Server):
    """A production server that can be killed outright and started again on its port."""

    env: dict[str, str] = field(default_factory=dict)

    @classmethod
    def create(cls, database_url: str, log: Path, env: dict[str, str]) -> "Gunicorn":
        port = free_port()
        full_env = site_env(database_url, **SERVER_ENV, **env, BIND=f"{HOST}:{port}")
        return cls(port=port, process=None, log=log, env=full_env)

    def launch(self) -> None:
        """Start the master; ``wait_ready`` waits for it to answer."""
        argv = [str(GUNICORN), "--config", "gunicorn.conf.py", "usage_site.wsgi"]
        with open(self.log, "ab") as log_file:
            self.process = subprocess.Popen(
                argv,
                cwd=PROJECT,
                env=self.env,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: the master and its workers
            )

    def wait_ready(self) -> None:
        poll(lambda: self.answers("/api/health/simple", 200), START_SECONDS, "no answer", self.log)

    def start(self) -> None:
        self.launch()
        self.wait_ready()

    def kill(self) -> None:
        """SIGKILL to the master and every worker; returns once the port is closed."""
        self._signal_group(signal.SIGKILL)
        self.process.wait(timeout=30)
        poll(lambda: not self.listening(), 10, "the port to close", self.log)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self._signal_group(signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self._signal_group(signal.SIGKILL)
            self.process.wait(timeout=30)

    def listening(self) -> bool:
        try:
            self.get("/api/health/simple")
        except OSError:
            return False
        return True

    def _signal_group(self, sig: int) -> None:
        with suppress(ProcessLookupError):  # already gone
            os.killpg(self.process.pid, sig)


@contextmanager
def serving(
    database_url: str, folder: Path, env: dict[str, str], count: int = 1
) -> Iterator[list[Gunicorn]]:
    """``count`` production servers on ports of their own, started side by side."""
    servers = [
        Gunicorn.create(database_url, folder / f"gunicorn-{n}.log", env) for n in range(count)
    ]
    try:
        for server in servers:
            server.launch()
        for server in servers:
            server.wait_ready()
        yield servers
    finally:
        for server in servers:
            server.stop()
