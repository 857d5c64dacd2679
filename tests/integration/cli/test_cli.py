"""The `corral` command end to end, as a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from backend.config import Settings


def _corral(settings: Settings, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {
        **os.environ,
        "CORRAL_DATABASE_URL": str(settings.database_url),
        "CORRAL_DATA_DIR": str(settings.data_dir),
        "CORRAL_RUNTIME_DIR": str(settings.runtime_dir),
        "CORRAL_DEVICE_NETWORK": "none",
        **env,
    }
    return subprocess.run(
        [sys.executable, "-m", "backend.cli", *args],
        env=environment,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )


def test_without_docker_the_cli_says_what_to_do(settings: Settings) -> None:
    result = _corral(
        settings, "provision", "--kind", "browser", "--count", "1", DOCKER_HOST="unix:///nonexistent.sock"
    )
    assert result.returncode == 1
    assert "Docker" in result.stderr
    assert "Traceback" not in result.stderr
    listed = _corral(settings, "devices", "--json")
    assert json.loads(listed.stdout) == []  # nothing half-made was left behind


def test_empty_listings(settings: Settings) -> None:
    assert "no devices" in _corral(settings, "devices").stdout
    assert "no jobs" in _corral(settings, "jobs").stdout
    bad = _corral(settings, "jobs", "retry", "12345")
    assert bad.returncode == 1
    assert "no job with id 12345" in bad.stderr


@pytest.mark.docker
def test_provision_list_remove(settings: Settings, docker_available: None) -> None:
    made = _corral(settings, "provision", "--kind", "browser", "--count", "2", "--wait")
    assert made.returncode == 0, made.stderr
    assert "ready" in made.stdout
    devices = json.loads(_corral(settings, "devices", "--json").stdout)
    assert [d["state"] for d in devices] == ["ready", "ready"]
    assert {d["name"] for d in devices} == {"browser-1", "browser-2"}
    table = _corral(settings, "devices").stdout
    assert table.splitlines()[0].split()[:4] == ["ID", "NAME", "KIND", "STATE"]

    one = _corral(settings, "rm", "browser-1")
    assert one.returncode == 0, one.stderr
    rest = _corral(settings, "rm", "--all")
    assert rest.returncode == 0, rest.stderr
    assert json.loads(_corral(settings, "devices", "--json").stdout) == []
    removed = json.loads(_corral(settings, "devices", "--json", "--all").stdout)
    assert {d["state"] for d in removed} == {"removed"}
    jobs = json.loads(_corral(settings, "jobs", "--json").stdout)
    assert {j["state"] for j in jobs} == {"succeeded"}
    assert sorted(j["kind"] for j in jobs) == ["provision", "provision", "remove", "remove"]
