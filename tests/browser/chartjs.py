"""A local Chart.js for the browser tests, since these machines have no CDN.

The pinned package comes from the npm registry (``npm pack``), is checked against the
registry's sha512 and the page's SRI sha384, cached under ``test-output/cache/``, and served
from a loopback HTTP server on another origin, so that the page's
``<script src integrity crossorigin>`` is exercised exactly as with the CDN.
"""

import base64
import hashlib
import shutil
import subprocess
import tarfile
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from tests.live_server import HOST, PROJECT

PACKAGE = "chart.js@4.6.1"
TARBALL_NAME = "chart.js-4.6.1.tgz"
# The npm registry's "integrity" for chart.js 4.6.1 (`npm view chart.js@4.6.1 dist.integrity`).
TARBALL_SHA512 = (
    "sha512-hJyniucsFmq//EvXYvJ6c6mahPoI3kaxdjVH8awTaJ/fDNWeSqqq"
    "ArixMJWkWNN6fcYvPU3HneSANFNYtRi61g=="
)
MEMBER = "package/dist/chart.umd.min.js"
SERVED_NAME = "chart.umd.min.js"
CACHE = PROJECT / "test-output" / "cache"


def sri(algorithm: str, data: bytes) -> str:
    return f"{algorithm}-{base64.b64encode(hashlib.new(algorithm, data).digest()).decode()}"


def fetch_tarball(cache: Path = CACHE) -> Path:
    """The verified package tarball, downloaded once with ``npm pack`` and then reused."""
    tarball = cache / TARBALL_NAME
    if tarball.exists() and sri("sha512", tarball.read_bytes()) == TARBALL_SHA512:
        return tarball
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError("npm is needed to fetch Chart.js for the browser tests")
    cache.mkdir(parents=True, exist_ok=True)
    # Pack into a scratch directory and move the file in only once it is verified, so a cut
    # download never sits in the cache looking like the real thing.
    with tempfile.TemporaryDirectory(dir=cache) as scratch:
        subprocess.run(
            [npm, "pack", PACKAGE, "--pack-destination", scratch, "--silent"],
            cwd=scratch,
            check=True,
            capture_output=True,
            timeout=120,
        )
        packed = Path(scratch) / TARBALL_NAME
        actual = sri("sha512", packed.read_bytes())
        if actual != TARBALL_SHA512:
            raise RuntimeError(f"{PACKAGE} from npm has {actual}, expected {TARBALL_SHA512}")
        packed.replace(tarball)
    return tarball


def extract_script(tarball: Path, expected_sri: str, into: Path) -> Path:
    """``dist/chart.umd.min.js`` from the tarball, if its sha384 is the page's SRI hash."""
    with tarfile.open(tarball) as archive:
        member = archive.extractfile(MEMBER)
        if member is None:
            raise RuntimeError(f"{MEMBER} is not a file in {tarball}")
        data = member.read()
    actual = sri("sha384", data)
    if actual != expected_sri:
        raise RuntimeError(f"{MEMBER} has {actual}, but the page expects {expected_sri}")
    into.mkdir(parents=True, exist_ok=True)
    script = into / SERVED_NAME
    script.write_bytes(data)
    return script


class _CorsHandler(SimpleHTTPRequestHandler):
    # crossorigin="anonymous" makes the browser check SRI only on a CORS-approved response.
    def end_headers(self) -> None:
        self.send_header("Access-Control-Allow-Origin", "*")
        super().end_headers()

    def log_message(self, format: str, *args) -> None:
        pass  # keep pytest's output for failures


@contextmanager
def serve_directory(directory: Path) -> Iterator[str]:
    """An HTTP server for ``directory`` on a free loopback port; yields its base URL."""
    server = ThreadingHTTPServer((HOST, 0), partial(_CorsHandler, directory=str(directory)))
    thread = threading.Thread(target=server.serve_forever, name="chartjs-server", daemon=True)
    thread.start()
    try:
        yield f"http://{HOST}:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
