"""The production server: nginx (deploy/nginx.conf) in front of gunicorn on a Unix socket.

    python -m deploy.front [--listen 127.0.0.1:8000] [-- gunicorn options]

``./dev.py serve`` runs this after collectstatic and migrate; the tests run it through
``./dev.py serve`` too. It fills in the nginx template from the site's settings (the body
limit, whether a TLS proxy's X-Forwarded-Proto is trusted, the security headers of nginx's
own answers), starts gunicorn with gunicorn.conf.py on a socket in a fresh run folder, then
nginx on the public address, and the background worker (``manage.py run_huey``: budget
alerts and webhooks; WORKER=0 leaves it to another machine), and stops them all when one
stops or on SIGTERM or Ctrl-C.

With ``APP_SERVERS`` (``host:port,host:port``: gunicorn with gunicorn.conf.py on other
machines or ports) it starts no gunicorn of its own, and nginx spreads the requests over
those app servers (docs/scaling.md). A request that cannot reach one goes to the next; one
cut off by an app server that dies is answered 503 with Retry-After, never a bare 502.
"""

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = Path(__file__).with_name("nginx.conf")
NGINX = "/usr/sbin/nginx"  # Debian's package
GUNICORN = Path(sys.executable).parent / "gunicorn"
START_SECONDS = 60


def render(*, listen: str, upstream: str | list[str]) -> str:
    """deploy/nginx.conf with the site's settings filled in (Django must be set up)."""
    from django.conf import settings

    from usage.errors import problem_response
    from usage.ingest import MAX_BODY_BYTES, body_too_large
    from usage_site.security import content_security_policy

    upstreams = [upstream] if isinstance(upstream, str) else upstream
    unavailable = app_unavailable()

    headers = {
        "Content-Security-Policy": content_security_policy(settings.CHARTJS_URL),
        "X-Frame-Options": settings.X_FRAME_OPTIONS,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": settings.SECURE_REFERRER_POLICY,
        "Cross-Origin-Opener-Policy": settings.SECURE_CROSS_ORIGIN_OPENER_POLICY,
    }
    values = {
        "LISTEN": listen,
        "UPSTREAM_SERVERS": "\n".join(f"        server {address};" for address in upstreams),
        "MAX_BODY_BYTES": str(MAX_BODY_BYTES),
        # Behind a TLS proxy that the site trusts, its header goes on; else nginx says what
        # the client used to reach it, whatever the client wrote.
        "FORWARDED_PROTO": "$http_x_forwarded_proto"
        if settings.TRUST_X_FORWARDED_PROTO
        else "$scheme",
        "SECURITY_HEADERS": "\n".join(
            f"            add_header {name} {quoted(value)} always;"
            for name, value in headers.items()
        ),
        "API_TOO_LARGE": literal(problem_response(body_too_large()).content.decode()),
        "PAGE_TOO_LARGE": literal(f"The request body is larger than {MAX_BODY_BYTES} bytes.\n"),
        "RETRY_AFTER": str(unavailable.retry_after),
        "API_UNAVAILABLE": literal(problem_response(unavailable).content.decode()),
        "PAGE_UNAVAILABLE": literal(f"{unavailable.message}\n"),
    }
    config = TEMPLATE.read_text()
    for name, value in values.items():
        config = config.replace(f"@{name}@", value)
    return config


def app_unavailable():
    """nginx's answer when no app server answered (all down, or one died mid-request)."""
    from usage.problems import Problem

    return Problem(
        "The site is restarting; try again in a moment.",
        status=503,
        code="unavailable",
        retry_after=2,
    )


def quoted(value: str) -> str:
    return f"'{literal(value)}'"


def literal(text: str) -> str:
    """``text`` inside an nginx single-quoted string, where ``$`` would name a variable."""
    if "$" in text:
        raise ValueError(f"no $ in a literal nginx answer: {text!r}")
    return text.replace("\\", "\\\\").replace("'", "\\'")


def nginx_binary() -> str:
    found = shutil.which("nginx") or (NGINX if Path(NGINX).exists() else None)
    if found is None:
        raise SystemExit("nginx is missing: ./dev.py serve installs Debian's nginx package")
    return found


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", default=os.environ.get("BIND", "127.0.0.1:8000"))
    parser.add_argument("gunicorn_options", nargs="*")
    options = parser.parse_args(argv)

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "usage_site.settings")
    import django

    django.setup()
    run_dir = Path(tempfile.mkdtemp(prefix="usage-front-"))
    run_dir.chmod(0o755)  # nginx's workers run as another user when started as root
    app_servers = [a.strip() for a in os.environ.get("APP_SERVERS", "").split(",") if a.strip()]
    try:
        if app_servers:
            return front_only(options.listen, app_servers, run_dir)
        return serve(options.listen, options.gunicorn_options, run_dir)
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)


def serve(listen: str, gunicorn_options: list[str], run_dir: Path) -> int:
    warn_if_each_process_has_its_own_cache()
    socket = run_dir / "gunicorn.sock"
    config = run_dir / "nginx.conf"
    config.write_text(render(listen=listen, upstream=f"unix:{socket}"))
    # NUM_PROXIES counts the proxies in front of this server (a load balancer); nginx, which
    # appends the address it saw to X-Forwarded-For, is one more.
    proxies = int(os.environ.get("NUM_PROXIES") or "0") + 1
    env = {**os.environ, "NUM_PROXIES": str(proxies)}
    argv = [str(GUNICORN), "--config", "gunicorn.conf.py", *gunicorn_options]
    argv += ["--bind", f"unix:{socket}", "usage_site.wsgi"]
    children = [subprocess.Popen(argv, cwd=ROOT, env=env)]
    stop = Stop(children)
    deadline = time.monotonic() + START_SECONDS
    while not socket.exists():
        if children[0].poll() is not None or time.monotonic() > deadline or stop.asked:
            return stop.all() or 1
        time.sleep(0.05)
    nginx = [nginx_binary(), "-p", str(run_dir), "-c", str(config), "-e", "stderr"]
    children.append(subprocess.Popen([*nginx, "-g", "daemon off;"], cwd=run_dir))
    if os.environ.get("WORKER", "1") != "0":
        worker = [sys.executable, "manage.py", "run_huey", "--quiet"]  # warnings and errors
        children.append(subprocess.Popen(worker, cwd=ROOT))
    print(f"Serving http://{listen} (nginx, in front of gunicorn on {socket})", flush=True)
    while not stop.asked and all(child.poll() is None for child in children):
        time.sleep(0.2)
    return stop.all()


def front_only(listen: str, app_servers: list[str], run_dir: Path) -> int:
    """nginx alone, in front of app servers started elsewhere (each with NUM_PROXIES counting
    this nginx too)."""
    config = run_dir / "nginx.conf"
    config.write_text(render(listen=listen, upstream=app_servers))
    nginx = [nginx_binary(), "-p", str(run_dir), "-c", str(config), "-e", "stderr"]
    children = [subprocess.Popen([*nginx, "-g", "daemon off;"], cwd=run_dir)]
    stop = Stop(children)
    print(f"Serving http://{listen} (nginx, in front of {', '.join(app_servers)})", flush=True)
    while not stop.asked and children[0].poll() is None:
        time.sleep(0.2)
    return stop.all()


def warn_if_each_process_has_its_own_cache() -> None:
    from django.conf import settings

    backend = settings.CACHES["default"]["BACKEND"]
    if backend.endswith("LocMemCache") and os.environ.get("WEB_CONCURRENCY", "2") != "1":
        print(
            "Warning: on SQLite without REDIS_URL each server process has its own cache, so "
            "every rate limit holds per process. Use PostgreSQL, set REDIS_URL, or set "
            "WEB_CONCURRENCY=1.",
            file=sys.stderr,
            flush=True,
        )


class Stop:
    """Stops every child on SIGTERM, SIGINT or SIGHUP, or when one of them has exited."""

    def __init__(self, children: list[subprocess.Popen]):
        self.children = children
        self.asked = False
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, self.ask)

    def ask(self, signum, frame) -> None:
        self.asked = True

    def all(self) -> int:
        """Stop the children (gunicorn gracefully); the first non-zero exit code, or 0."""
        for child in self.children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        codes = []
        for child in self.children:
            try:
                codes.append(child.wait(timeout=30))
            except subprocess.TimeoutExpired:
                child.kill()
                codes.append(child.wait())
        return next((code for code in codes if code not in (0, -signal.SIGTERM)), 0)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
