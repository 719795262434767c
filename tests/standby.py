"""A hot standby of the suite's PostgreSQL cluster, streaming from it on a loopback port.

Runs under scripts/with_postgres.py (PGDATA, PGPORT, PG_BINDIR, PG_RUN_AS), whose primary
allows replication from 127.0.0.1 as initdb sets it up (wal_level=replica, trust for the
``replication`` pseudo-database). ``pg_basebackup -R`` copies the primary into a folder of
its own and writes the standby's connection to it; a replication slot keeps the WAL the
standby has not received yet, so it catches up after a stop. ``recovery_min_apply_delay``
holds every transaction back by a few seconds, so that the lag is real and can be seen.
"""

import os
import shutil
import subprocess
import tempfile
import uuid
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest

from tests.live_server import HOST, free_port


class Standby:
    def __init__(self, apply_delay_ms: int):
        self.apply_delay_ms = apply_delay_ms
        self.bindir = Path(os.environ["PG_BINDIR"])
        self.run_as = os.environ.get("PG_RUN_AS") or None
        self.primary_port = os.environ["PGPORT"]
        self.folder = Path(tempfile.mkdtemp(prefix="standby-"))
        self.data = self.folder / "data"
        self.log = self.folder / "standby.log"
        self.port = free_port()
        self.slot = f"standby_{uuid.uuid4().hex[:8]}"
        if self.run_as:  # the server's user owns its folder (PostgreSQL refuses root)
            shutil.chown(self.folder, user=self.run_as, group=self.run_as)

    def _run(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess:
        if self.run_as:
            argv = ("runuser", "-u", self.run_as, "--", *argv)
        result = subprocess.run(argv, cwd=self.folder, capture_output=True, text=True, timeout=120)
        if check and result.returncode != 0:
            tail = self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""
            pytest.fail(f"{' '.join(argv)} failed:\n{result.stdout}{result.stderr}\n{tail}")
        return result

    def create(self) -> None:
        """Copy the primary (``pg_basebackup -R``) and set the standby's own settings."""
        self._run(
            str(self.bindir / "pg_basebackup"),
            *("-h", HOST, "-p", self.primary_port, "-U", "postgres"),
            *("-D", str(self.data), "-R", "-X", "stream", "-C", "-S", self.slot),
            "--checkpoint=fast",  # not a spread checkpoint, which takes minutes
        )
        settings = {
            "port": str(self.port),
            "listen_addresses": HOST,
            "unix_socket_directories": str(self.folder),
            "hot_standby": "on",
            # The primary keeps the row versions the standby's queries still read, instead of
            # the standby cancelling them (docs/scaling.md recommends it for a replica).
            "hot_standby_feedback": "on",
            "recovery_min_apply_delay": f"{self.apply_delay_ms}ms",
            "shared_buffers": "64MB",
        }
        with open(self.data / "postgresql.conf", "a", encoding="utf-8") as conf:
            conf.write("\n# The standby's own (tests/standby.py); later lines win.\n")
            conf.writelines(f"{name} = '{value}'\n" for name, value in settings.items())

    def start(self) -> None:
        pg_ctl = str(self.bindir / "pg_ctl")
        self._run(pg_ctl, "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60", "start")

    def stop(self) -> None:
        """A clean stop (``pg_ctl -m fast``): its connections are cut, queries fail."""
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")

    def is_running(self) -> bool:
        status = [str(self.bindir / "pg_ctl"), "-D", str(self.data), "status"]
        return self._run(*status, check=False).returncode == 0

    def remove(self) -> None:
        """Stop it, drop its slot on the primary (which would keep WAL forever), delete it."""
        if self.data.exists() and self.is_running():
            self.stop()
        with primary("postgres") as conn:
            conn.execute(
                "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                "WHERE slot_name = %s",
                [self.slot],
            )
        shutil.rmtree(self.folder, ignore_errors=True)

    def url(self, dbname: str) -> str:
        return f"postgres://postgres@{HOST}:{self.port}/{dbname}"

    def connect(self, dbname: str) -> psycopg.Connection:
        return psycopg.connect(
            host=HOST, port=self.port, user="postgres", dbname=dbname, autocommit=True
        )

    def lag_seconds(self, dbname: str) -> float:
        """How far behind the primary's last commit the standby's replay is, now."""
        with self.connect(dbname) as conn:
            row = conn.execute(
                "SELECT pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn(), "
                "extract(epoch FROM now() - pg_last_xact_replay_timestamp())"
            ).fetchone()
        caught_up, age = row
        return 0.0 if caught_up else float(age or 0.0)


def primary(dbname: str) -> psycopg.Connection:
    return psycopg.connect(
        host=HOST, port=os.environ["PGPORT"], user="postgres", dbname=dbname, autocommit=True
    )


@contextmanager
def standby_of_the_cluster(apply_delay_ms: int):
    """A running standby of the suite's cluster, removed afterwards whatever happens."""
    standby = Standby(apply_delay_ms)
    try:
        standby.create()
        standby.start()
        yield standby
    finally:
        standby.remove()
