"""Read-only commands on a data directory with no database yet create nothing."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.db.test_embedded import stop_leftover_server


@pytest.fixture
def data_dir() -> Iterator[Path]:
    """Where the data directory will be (not made), in a directory the pgserver user may enter."""
    parent = Path(tempfile.mkdtemp(prefix="crl-cli-", dir="/tmp"))
    os.chmod(parent, 0o755)
    yield parent / "data"
    stop_leftover_server(parent / "data" / "pgdata")
    shutil.rmtree(parent, ignore_errors=True)


def _corral(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "CORRAL_DATABASE_URL"}
    env.update(
        CORRAL_DATA_DIR=str(data_dir),
        CORRAL_RUNTIME_DIR=str(data_dir.parent / "run"),
        CORRAL_DEVICE_NETWORK="none",
    )
    return subprocess.run(
        [sys.executable, "-m", "backend.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_listing_with_no_database_yet_creates_nothing(data_dir: Path) -> None:
    expected = {
        ("devices",): "no devices yet; create some with: corral provision --kind browser --count 2\n",
        ("devices", "--json"): "[]\n",
        ("jobs",): "no jobs yet\n",
        ("jobs", "--json"): "[]\n",
    }
    for args, stdout in expected.items():
        result = _corral(data_dir, *args)
        assert (result.returncode, result.stdout, result.stderr) == (0, stdout, ""), args
    retry = _corral(data_dir, "jobs", "retry", "7")
    assert (retry.returncode, retry.stderr) == (1, "corral: no job with id 7 (no database yet)\n")
    assert not data_dir.exists()
    assert sorted(p.name for p in data_dir.parent.iterdir()) == []


def test_doctor_says_it_created_the_cluster_and_clients_make_no_secret(data_dir: Path) -> None:
    first = _corral(data_dir, "doctor")
    assert f"(embedded in {data_dir / 'pgdata'}; created it now (first use))" in first.stdout, first.stdout
    again = _corral(data_dir, "doctor")
    assert f"(embedded in {data_dir / 'pgdata'})\n" in again.stdout, again.stdout
    listed = _corral(data_dir, "devices", "--json")
    assert (listed.returncode, json.loads(listed.stdout)) == (0, [])
    assert (_corral(data_dir, "devices").stdout).startswith("no devices; create some with")
    assert not (data_dir / "secret.key").exists()
    assert sorted(p.name for p in data_dir.iterdir()) == ["pg-run", "pgdata"]
