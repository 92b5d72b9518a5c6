"""Fixtures for integration tests: the real components `make test` starts (scripts/services.sh).

A component that is missing fails the test (never skips): CI must run every integration test.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

BUSYBOX_IMAGE = "paasport-test-busybox:latest"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/integration/" in str(item.path):
            item.add_marker(pytest.mark.integration)


def _docker(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        ["docker", *args], input=stdin, capture_output=True, check=False, timeout=300
    )


def build_busybox_image(tag: str = BUSYBOX_IMAGE) -> str:
    """Build (once per machine) a static-busybox image from scratch: no pulls."""
    if _docker("image", "inspect", tag).returncode == 0:
        return tag
    busybox = shutil.which("busybox") or "/bin/busybox"
    with tempfile.TemporaryDirectory() as ctx:
        shutil.copy(busybox, Path(ctx) / "busybox")
        (Path(ctx) / "Dockerfile").write_text(
            "FROM scratch\n"
            "COPY busybox /bin/busybox\n"
            'RUN ["/bin/busybox", "--install", "-s", "/bin"]\n'
            "ENV PATH=/bin\n"
            "RUN mkdir -p /www /tmp && echo ok > /www/status && echo hello > /www/index.html\n"
            'CMD ["httpd", "-f", "-p", "8888", "-h", "/www"]\n'
        )
        out = _docker("build", "-q", "-t", tag, ctx)
        if out.returncode != 0:
            raise RuntimeError(f"building {tag} failed: {out.stderr.decode()}")
    return tag


@pytest.fixture(scope="session")
def busybox_image() -> str:
    return build_busybox_image()


@pytest.fixture(scope="session")
def registry_addr() -> str:
    return f"127.0.0.1:{os.environ.get('PAASPORT_TEST_REGISTRY_PORT', '5000')}"


@pytest.fixture(scope="session")
def zk_hosts() -> str:
    return f"127.0.0.1:{os.environ.get('PAASPORT_TEST_ZK_PORT', '2181')}"


@pytest.fixture(scope="session")
def alertmanager_url() -> str:
    return f"http://127.0.0.1:{os.environ.get('PAASPORT_TEST_ALERTMANAGER_PORT', '9093')}"


@pytest.fixture
def tmp_dir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="paasport-test-") as d:
        yield Path(d)


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """The superuser URL of scripts/services.sh's Postgres: PAASPORT_TEST_POSTGRES_URL, else the
    one services.sh writes to .run/postgres.url (role postgres, a password it generated)."""
    url = os.environ.get("PAASPORT_TEST_POSTGRES_URL")
    if url:
        return url
    run_dir = Path(os.environ.get("PAASPORT_RUN_DIR") or Path(__file__).parents[2] / ".run")
    path = run_dir / "postgres.url"
    if not path.is_file():
        pytest.fail(f"no {path}: start Postgres with `bash scripts/services.sh start postgres`")
    return path.read_text().strip()
