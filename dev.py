#!/usr/bin/env python3
"""The project's two commands, and a few more, with nothing but Python 3.11+ installed.

    ./dev.py run     set up, then run the site on SQLite at http://127.0.0.1:8000, and the
                     background worker beside it (budget alerts, webhooks)
    ./dev.py test    set up, then run every check and test (SQLite, then PostgreSQL)
    ./dev.py serve   run the production server (nginx in front of gunicorn + whitenoise)
                     and the background worker (manage.py run_huey; WORKER=0: not here)
    ./dev.py bench   measure the performance targets, write docs/performance.md
    ./dev.py upstream  run the development stand-in of the external API on 127.0.0.1:3001

Set-up is a virtual environment in .venv with the pinned requirements (requirements.txt to
run, -dev.txt to test, -bench.txt to bench); it is redone only when one of them changes.
"""

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / "bin"
PY = BIN / "python"
TEST_SECRET_KEY = "test-only-secret-key-not-for-production"
CHROMIUM = "/usr/bin/chromium"  # Debian's package; the browser tests drive it


def main(argv: list[str]) -> int:
    commands = {"run": run, "test": test, "serve": serve, "bench": bench, "upstream": upstream}
    if len(argv) < 2 or argv[1] not in commands:
        print(__doc__)
        return 2
    if sys.version_info < (3, 11):  # noqa: UP036 - this file runs before the venv exists
        print("This project needs Python 3.11 or newer.", file=sys.stderr)
        return 2
    os.chdir(ROOT)
    return commands[argv[1]](argv[2:])


def sh(*args: str | Path, env: dict | None = None) -> None:
    print("+", " ".join(str(a) for a in args), flush=True)
    result = subprocess.run([str(a) for a in args], env={**os.environ, **(env or {})}, check=False)
    if result.returncode:
        raise SystemExit(result.returncode)


def ensure_venv(requirements: str) -> None:
    venv_failed = (
        not PY.exists() and subprocess.run([sys.executable, "-m", "venv", str(VENV)]).returncode
    )
    if venv_failed:
        install_venv_support()
        shutil.rmtree(VENV, ignore_errors=True)
        sh(sys.executable, "-m", "venv", VENV)
    # The hash of every requirements file as last installed, so that switching between run,
    # test and bench installs nothing until one of the files they read changes.
    state = VENV / ".installed.json"
    installed = json.loads(state.read_text()) if state.exists() else {}
    wanted = {name: file_hash(name) for name in requirement_files(requirements)}
    if any(installed.get(name) != digest for name, digest in wanted.items()):
        sh(PY, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "-r", requirements)
        state.write_text(json.dumps({**installed, **wanted}, indent=2, sort_keys=True))


def requirement_files(name: str) -> list[str]:
    """``name`` and every file it includes with ``-r``, each once."""
    files = [name]
    for line in (ROOT / name).read_text().splitlines():
        option, _, included = line.strip().partition(" ")
        if option in ("-r", "--requirement"):
            files += [f for f in requirement_files(included.strip()) if f not in files]
    return files


def file_hash(name: str) -> str:
    return hashlib.sha256((ROOT / name).read_bytes()).hexdigest()


def install_venv_support() -> None:
    # Debian and Ubuntu ship venv's pip bootstrap as a separate package.
    if os.geteuid() == 0 and shutil.which("apt-get"):
        version = f"{sys.version_info.major}.{sys.version_info.minor}"
        sh("apt-get", "update", "-qq")
        sh("apt-get", "install", "-y", "-qq", "python3-venv", f"python{version}-venv")
    else:
        print("python3 -m venv failed: install the python3-venv package.", file=sys.stderr)
        raise SystemExit(2)


def run(args: list[str]) -> int:
    ensure_venv("requirements.txt")
    # Sign-up open in the demo, so that the whole account flow can be tried (mail goes to
    # the console).
    env = {"DEBUG": os.environ.get("DEBUG", "1"), "SIGNUP_OPEN": os.environ.get("SIGNUP_OPEN", "1")}
    # The demo may point its budget's webhook at a receiver on this machine.
    env["WEBHOOK_ALLOW_PRIVATE_ADDRESSES"] = os.environ.get("WEBHOOK_ALLOW_PRIVATE_ADDRESSES", "1")
    address = os.environ.get("ADDRESS", "127.0.0.1:8000")
    sh(PY, "manage.py", "migrate", "--no-input", "--verbosity", "0", env=env)
    sh(PY, "manage.py", "create_demo_account", "--url", f"http://{address}", env=env)
    if env["DEBUG"] == "1":  # 90 days of demo usage, once, so the charts are full at once
        sh(PY, "manage.py", "seed_demo", "--if-empty", env=env)
    # The background worker (budget alerts, webhooks: usage.tasks) beside the server, and
    # stopped with it. Its queue is a SQLite file beside the database: nothing to start.
    print("+", PY, "manage.py", "run_huey --quiet", "(in the background)", flush=True)
    worker = subprocess.Popen(
        [str(PY), "manage.py", "run_huey", "--quiet"], env={**os.environ, **env}
    )
    # SIGTERM as Ctrl-C: the server stops, then the worker, rather than leaving it behind.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        sh(PY, "manage.py", "runserver", address, *args, env=env)
    finally:
        worker.terminate()
        worker.wait(timeout=30)
    return 0


def serve(args: list[str]) -> int:
    """nginx on BIND in front of gunicorn (deploy/front.py); ``args`` go to gunicorn."""
    ensure_venv("requirements.txt")
    ensure_packages({"nginx": nginx_present()}, "The production server needs")
    sh(PY, "manage.py", "collectstatic", "--no-input", "--verbosity", "0")
    sh(PY, "manage.py", "migrate", "--no-input")
    # exec, so that a signal to this process (Ctrl-C, SIGTERM) reaches the front's own.
    argv = [str(PY), "-m", "deploy.front", "--", *args]
    print("+", " ".join(argv), flush=True)
    os.execv(str(PY), argv)
    return 0  # not reached


def nginx_present() -> bool:
    return shutil.which("nginx") is not None or Path("/usr/sbin/nginx").exists()


def bench(args: list[str]) -> int:
    """PostgreSQL, the production server, data and wrk: see scripts/bench.py (--help)."""
    started = str(time.time())  # the bench reports how long the whole command took
    ensure_venv("requirements-bench.txt")
    ensure_wrk()
    ensure_packages(
        {"redis-server": shutil.which("redis-server") is not None}, "The bench (the cache) needs"
    )
    env = {"BENCH_STARTED_AT": started}
    # Durability on, as in production: the test suite's cluster runs with fsync off.
    env["PG_EXTRA_OPTIONS"] = "-c fsync=on -c full_page_writes=on -c max_wal_size=4GB"
    sh(sys.executable, "scripts/with_postgres.py", "--", PY, "scripts/bench.py", *args, env=env)
    return 0


def ensure_wrk() -> None:
    if shutil.which("wrk"):
        return
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        print("The bench needs wrk: as root, apt-get install wrk.", file=sys.stderr)
        raise SystemExit(2)
    sh("apt-get", "update", "-qq")
    sh("apt-get", "install", "-y", "-qq", "--no-install-recommends", "wrk")


def upstream(args: list[str]) -> int:
    # The stand-in needs only the standard library, so no virtual environment; exec, so
    # that Ctrl-C stops it without a traceback from this script.
    argv = [sys.executable, str(ROOT / "scripts" / "standin_upstream.py"), *args]
    print("+", " ".join(argv), flush=True)
    os.execv(sys.executable, argv)
    return 0  # not reached


def test(args: list[str]) -> int:
    ensure_venv("requirements-dev.txt")
    ensure_test_tools()
    # Production settings, except that the test servers speak plain HTTP on loopback.
    env = {"SECRET_KEY": TEST_SECRET_KEY, "DEBUG": "0", "HTTPS_ONLY": "0"}
    sh(BIN / "ruff", "check", ".")
    sh(BIN / "ruff", "format", "--check", ".")
    sh(PY, "manage.py", "makemigrations", "--check", "--dry-run", env=env)
    print("\n== tests on SQLite ==", flush=True)
    sh(BIN / "pytest", *args, env={**env, "DATABASE_URL": "sqlite:///test-sqlite.sqlite3"})
    print("\n== tests on PostgreSQL ==", flush=True)
    sh(sys.executable, "scripts/with_postgres.py", "--", BIN / "pytest", *args, env=env)
    print("\n== desktop client tests (Node) against a live server ==", flush=True)
    node_tests = sorted(str(path) for path in (ROOT / "tests" / "electron").glob("*.test.js"))
    sh("node", "--test", *node_tests, env={**env, "USAGE_PYTHON": str(PY)})
    return 0


def ensure_test_tools() -> None:
    """Install what the browser, desktop-client, Redis and front tests need and a bare machine
    lacks."""
    wanted = {
        "chromium": Path(CHROMIUM).exists(),
        "redis-server": shutil.which("redis-server") is not None,  # the shared-cache tests
        "nodejs": shutil.which("node") is not None,
        "npm": shutil.which("npm") is not None,  # Node builds from NodeSource include npm
        "nginx": nginx_present(),  # the production front (tests/test_front.py)
    }
    ensure_packages(wanted, "The tests need")


def ensure_packages(wanted: dict[str, bool], who: str) -> None:
    """apt-get install the Debian packages of ``wanted`` that are not present."""
    missing = [package for package, present in wanted.items() if not present]
    if not missing:
        return
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        print(f"{who} these packages: {' '.join(missing)}.", file=sys.stderr)
        raise SystemExit(2)
    sh("apt-get", "update", "-qq")
    sh("apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
