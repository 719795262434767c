"""Run a command against a throwaway PostgreSQL cluster.

Usage:

    python scripts/with_postgres.py [--keep-logs] -- COMMAND [ARGS...]

The script initialises a fresh cluster in a temporary directory, starts it on a free port on
127.0.0.1, creates a database named ``usage`` and runs COMMAND with ``DATABASE_URL`` (and the
usual ``PG*`` variables) pointing at it. Afterwards the server is stopped and the directory is
deleted, also on Ctrl-C or SIGTERM. The exit code is the command's exit code.

The command also gets ``PGDATA``, ``PG_BINDIR``, ``PG_RUN_AS`` and ``PG_LOGFILE`` so that tests
can stop and restart the cluster themselves, e.g.
``runuser -u "$PG_RUN_AS" -- "$PG_BINDIR/pg_ctl" -D "$PGDATA" -l "$PG_LOGFILE" -w start``
(drop the ``runuser`` part when ``PG_RUN_AS`` is empty). All server settings are written to
``postgresql.conf``, so a plain ``pg_ctl start`` brings the server back on the same port.
The cluster accepts replication connections from 127.0.0.1, so that tests can start a hot
standby of it (tests/standby.py).

Extra server options can be passed through ``PG_EXTRA_OPTIONS`` (appended verbatim to the
``pg_ctl -o`` string; they are not persisted for restarts).
"""

from __future__ import annotations

import argparse
import os
import pwd
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

DATABASE = "usage"
SUPERUSER = "postgres"
SYSTEM_USER = "postgres"
HOST = "127.0.0.1"
SERVER_BINARIES = ("initdb", "pg_ctl", "postgres")
LOG_TAIL_LINES = 40
CHILD_GRACE_SECONDS = 10.0
INSTALL_HINT = (
    "PostgreSQL server binaries (initdb, pg_ctl, postgres) not found.\n"
    "Install PostgreSQL 15 or newer, e.g. `sudo apt-get install postgresql`."
)


class SetupError(Exception):
    """The cluster could not be created or started; the message is shown to the user."""


class Terminated(Exception):
    """Raised from the SIGTERM handler so that cleanup runs like it does for Ctrl-C."""


def log(message: str) -> None:
    print(f"with_postgres: {message}", file=sys.stderr, flush=True)


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    raise Terminated


def _version_key(bindir: Path) -> tuple[int, ...]:
    # bindir is /usr/lib/postgresql/<version>/bin; compare "9.6" < "15" numerically.
    return tuple(int(part) for part in re.findall(r"\d+", bindir.parent.name))


def _has_server_binaries(bindir: Path) -> bool:
    return all((bindir / name).is_file() for name in SERVER_BINARIES)


def find_bindir() -> Path | None:
    pg_config = shutil.which("pg_config")
    if pg_config:
        result = run_captured([pg_config, "--bindir"])
        if result.returncode == 0:
            bindir = Path(result.stdout.strip())
            if _has_server_binaries(bindir):
                return bindir
    candidates = [
        initdb.parent
        for initdb in Path("/usr/lib/postgresql").glob("*/bin/initdb")
        if _has_server_binaries(initdb.parent)
    ]
    candidates.sort(key=_version_key)
    return candidates[-1] if candidates else None


def install_postgres() -> None:
    log("PostgreSQL not found; installing it with apt-get (this may take a minute)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for argv in (["apt-get", "update"], ["apt-get", "install", "-y", "postgresql"]):
        result = run_captured(argv, env=env)
        if result.returncode != 0:
            sys.stderr.write(result.stdout + result.stderr)
            raise SetupError(f"`{shlex.join(argv)}` failed.\n{INSTALL_HINT}")


def locate_or_install_bindir() -> Path:
    bindir = find_bindir()
    if bindir is None and os.geteuid() == 0 and shutil.which("apt-get"):
        install_postgres()
        bindir = find_bindir()
    if bindir is None:
        raise SetupError(INSTALL_HINT)
    return bindir


def server_user() -> str | None:
    """The system user to run the server as, or None for the current user."""
    # PostgreSQL refuses to run as root.
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        raise SetupError(
            f"running as root but there is no `{SYSTEM_USER}` system user to run PostgreSQL as."
        ) from None
    return SYSTEM_USER


def as_user(argv: Sequence[str], user: str | None) -> list[str]:
    if user is None:
        return list(argv)
    if shutil.which("runuser"):
        return ["runuser", "-u", user, "--", *argv]
    return ["su", user, "-s", "/bin/sh", "-c", shlex.join(argv)]


def run_captured(
    argv: Sequence[str], cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv,
        check=False,
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
    )


def run_quietly(
    argv: Sequence[str], user: str | None, cwd: Path
) -> subprocess.CompletedProcess[str]:
    # cwd must be readable by the server user; it may not be able to enter the caller's cwd.
    return run_captured(as_user(argv, user), cwd=cwd)


def output_of(result: subprocess.CompletedProcess[str]) -> str:
    return (result.stdout or "") + (result.stderr or "")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def server_version(bindir: Path) -> str:
    result = run_captured([str(bindir / "postgres"), "--version"])
    match = re.search(r"\(PostgreSQL\)\s+(\S+)", result.stdout)
    return match.group(1) if match else "(unknown version)"


def prepare_directory(tmp: Path, data: Path, user: str | None) -> None:
    data.mkdir(mode=0o700)
    if user is not None:
        for path in (tmp, data):
            shutil.chown(path, user=user, group=pwd.getpwnam(user).pw_gid)


def init_cluster(bindir: Path, data: Path, user: str | None, cwd: Path) -> None:
    initdb = [str(bindir / "initdb"), "-D", str(data), "-U", SUPERUSER]
    initdb += ["--auth=trust", "--encoding=UTF8"]
    failures = []
    # C.UTF-8 is missing on some systems; plain C still gives a UTF8 database.
    for locale in ("C.UTF-8", "C"):
        result = run_quietly([*initdb, f"--locale={locale}"], user, cwd)
        if result.returncode == 0:
            return
        failures.append(output_of(result))
    sys.stderr.write("".join(failures))
    raise SetupError("initdb failed.")


def server_settings(port: int, socket_dir: Path) -> dict[str, str]:
    return {
        "port": str(port),
        "listen_addresses": HOST,
        "unix_socket_directories": str(socket_dir),
        "fsync": "off",
        "full_page_writes": "off",
        "max_connections": "200",
        "shared_buffers": "256MB",
        # A hot standby can stream from it (tests/standby.py); initdb's pg_hba.conf already
        # trusts replication connections from 127.0.0.1. PostgreSQL's defaults, said out loud.
        "wal_level": "replica",
        "max_wal_senders": "10",
    }


def conf_quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def persist_settings(data: Path, settings: dict[str, str]) -> None:
    # Written to the config file (not only passed with -o) so that a test can restart the
    # cluster with a plain `pg_ctl start` and get the same port and settings back.
    lines = ["", "# Added by scripts/with_postgres.py"]
    lines += [f"{name} = {conf_quote(value)}" for name, value in settings.items()]
    with open(data / "postgresql.conf", "a", encoding="utf-8") as conf:
        conf.write("\n".join(lines) + "\n")


def server_options(settings: dict[str, str]) -> str:
    # pg_ctl pastes this string into a /bin/sh command line, hence shlex.quote.
    options = [f"-p {settings['port']}"]
    options += [
        f"-c {shlex.quote(f'{name}={value}')}" for name, value in settings.items() if name != "port"
    ]
    extra = os.environ.get("PG_EXTRA_OPTIONS", "").strip()
    if extra:
        options.append(extra)
    return " ".join(options)


def log_tail(logfile: Path) -> str:
    try:
        lines = logfile.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as exc:
        return f"(could not read {logfile}: {exc})"
    return "\n".join(lines[-LOG_TAIL_LINES:])


def start_server(
    bindir: Path, data: Path, logfile: Path, options: str, user: str | None, cwd: Path
) -> None:
    pg_ctl = str(bindir / "pg_ctl")
    argv = [pg_ctl, "-D", str(data), "-l", str(logfile), "-w", "-t", "60", "-o", options]
    result = run_quietly([*argv, "start"], user, cwd)
    if result.returncode != 0:
        sys.stderr.write(output_of(result))
        sys.stderr.write(f"--- last lines of {logfile} ---\n{log_tail(logfile)}\n")
        raise SetupError("the PostgreSQL server failed to start.")


def create_database(bindir: Path, port: int, cwd: Path) -> None:
    argv = [str(bindir / "createdb"), "-h", HOST, "-p", str(port), "-U", SUPERUSER, DATABASE]
    result = run_captured(argv, cwd=cwd)
    if result.returncode != 0:
        sys.stderr.write(output_of(result))
        raise SetupError(f"could not create database {DATABASE!r}.")


def stop_server(bindir: Path, data: Path, user: str | None, cwd: Path) -> None:
    if not (data / "postmaster.pid").exists():
        return  # never started, or already stopped by the command
    pg_ctl = str(bindir / "pg_ctl")
    for mode in ("fast", "immediate"):
        result = run_quietly([pg_ctl, "-D", str(data), "-m", mode, "stop"], user, cwd)
        if result.returncode == 0 or not (data / "postmaster.pid").exists():
            return
    sys.stderr.write(output_of(result))
    log(f"warning: could not stop the server in {data}")


def command_env(
    bindir: Path, data: Path, logfile: Path, port: int, user: str | None
) -> dict[str, str]:
    return {
        **os.environ,
        "DATABASE_URL": f"postgres://{SUPERUSER}@{HOST}:{port}/{DATABASE}",
        "PGHOST": HOST,
        "PGPORT": str(port),
        "PGUSER": SUPERUSER,
        "PGDATA": str(data),
        "PG_BINDIR": str(bindir),
        "PG_RUN_AS": user or "",
        "PG_LOGFILE": str(logfile),
    }


def exit_code(returncode: int) -> int:
    # Follow the shell convention for a child killed by a signal.
    return 128 - returncode if returncode < 0 else returncode


def stop_child(child: subprocess.Popen[bytes], first_signal: int | None) -> None:
    escalation = [first_signal, signal.SIGTERM, signal.SIGKILL]
    for sig in dict.fromkeys(escalation):
        if child.poll() is not None:
            return
        if sig is not None:
            child.send_signal(sig)
        try:
            child.wait(timeout=CHILD_GRACE_SECONDS)
            return
        except (subprocess.TimeoutExpired, KeyboardInterrupt, Terminated):
            continue


def run_command(command: Sequence[str], env: dict[str, str]) -> int:
    try:
        child = subprocess.Popen(command, env=env)
    except OSError as exc:
        log(f"cannot run {command[0]!r}: {exc}")
        return 127
    try:
        return exit_code(child.wait())
    except KeyboardInterrupt:
        # Ctrl-C in a terminal already reached the child (same process group); sending SIGINT
        # again could abort its own cleanup, so only escalate if it does not exit by itself.
        stop_child(child, None)
        raise
    except Terminated:
        stop_child(child, signal.SIGTERM)
        raise


def keep_log(logfile: Path) -> None:
    if not logfile.exists():
        log(f"no server log was written ({logfile} does not exist)")
        return
    fd, copy = tempfile.mkstemp(prefix="with_postgres-", suffix=".log")
    os.close(fd)
    shutil.copyfile(logfile, copy)
    log(f"server log kept at {copy}")


def cleanup(bindir: Path, tmp: Path, user: str | None, keep_logs: bool) -> None:
    # A second Ctrl-C must not leave a running server or a stray data directory behind.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    stop_server(bindir, tmp / "data", user, tmp)
    if keep_logs:
        keep_log(tmp / "postgres.log")
    shutil.rmtree(tmp, ignore_errors=True)
    if tmp.exists():
        log(f"warning: could not remove {tmp}")


def run_with_cluster(
    bindir: Path, user: str | None, command: Sequence[str], keep_logs: bool
) -> int:
    tmp = Path(tempfile.mkdtemp(prefix="with_postgres-"))
    data, logfile = tmp / "data", tmp / "postgres.log"
    try:
        prepare_directory(tmp, data, user)
        init_cluster(bindir, data, user, tmp)
        port = free_port()
        settings = server_settings(port, tmp)
        persist_settings(data, settings)
        start_server(bindir, data, logfile, server_options(settings), user, tmp)
        create_database(bindir, port, tmp)
        version = server_version(bindir)
        log(f"PostgreSQL {version} on {HOST}:{port} (data in {data})")
        return run_command(command, command_env(bindir, data, logfile, port, user))
    finally:
        cleanup(bindir, tmp, user, keep_logs)


def parse_args(argv: Sequence[str]) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(
        description="Run COMMAND against a throwaway PostgreSQL cluster.",
        usage="%(prog)s [--keep-logs] -- COMMAND [ARGS...]",
    )
    parser.add_argument(
        "--keep-logs",
        action="store_true",
        help="keep a copy of the server log and print its path",
    )
    split = argv.index("--") if "--" in argv else len(argv)
    options, command = parser.parse_args(argv[:split]), list(argv[split + 1 :])
    if not command:
        parser.error("missing COMMAND after `--`")
    return options, command


def main(argv: Sequence[str]) -> int:
    options, command = parse_args(argv)
    signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        bindir = locate_or_install_bindir()
        return run_with_cluster(bindir, server_user(), command, options.keep_logs)
    except SetupError as exc:
        log(str(exc))
        return 2
    except KeyboardInterrupt:
        return 128 + signal.SIGINT
    except Terminated:
        return 128 + signal.SIGTERM


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
