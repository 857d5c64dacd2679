"""The `corral` command end to end, as a user runs it."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from backend.config import Settings
from backend.db.database import asyncpg_connect_kwargs
from tests.serve import Serve, cli_env, corral

NO_HOST_HOSTS = "no Corral host is running, so this command is the host until the jobs it queued have ended"


def _corral(settings: Settings, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return corral(settings, *args, **env)


@pytest.fixture
async def db(settings: Settings) -> AsyncIterator[asyncpg.Connection]:
    """A superuser connection to the test database, migrated to head by the CLI itself."""
    upgraded = _corral(settings, "db", "upgrade")
    assert upgraded.returncode == 0, upgraded.stderr
    connection = await asyncpg.connect(**asyncpg_connect_kwargs(settings.database_url or ""))
    yield connection
    await connection.close()


async def _rows(db: asyncpg.Connection) -> dict[str, list[tuple[object, ...]]]:
    return {
        table: [tuple(row) for row in await db.fetch(f"SELECT * FROM {table} ORDER BY 1")]
        for table in ("devices", "jobs", "device_events")
    }


async def _host_lock_holders(db: asyncpg.Connection) -> int:
    return int(
        await db.fetchval(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objsubid = 1 "
            "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        )
    )


async def test_read_only_commands_take_no_lock_bind_nothing_and_write_nothing(
    settings: Settings, db: asyncpg.Connection
) -> None:
    # A device that was up and a queued job: a host would bind the device's hub
    # socket, and its worker would claim the job (no handler: it would fail it).
    await db.execute(
        "INSERT INTO devices (id, name, kind, state) VALUES ('d0ro', 'browser-1', 'browser', 'ready')"
    )
    await db.execute("INSERT INTO jobs (kind, device_id) VALUES ('noop', 'd0ro')")
    before = await _rows(db)
    # The commands run as a role that may only read and may not take advisory locks.
    role = f"reader_{uuid.uuid4().hex[:8]}"
    await db.execute(f"CREATE ROLE {role} LOGIN")
    await db.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role}")
    for function in (
        "pg_advisory_lock(bigint)",
        "pg_try_advisory_lock(bigint)",
        "pg_advisory_xact_lock(bigint)",
    ):
        await db.execute(f"REVOKE EXECUTE ON FUNCTION {function} FROM PUBLIC")
    reader_url = (
        make_url(settings.database_url or "").set(username=role).render_as_string(hide_password=False)
    )
    try:
        for args in (("devices",), ("devices", "--json"), ("jobs",), ("jobs", "--json"), ("doctor",)):
            result = _corral(settings, *args, CORRAL_DATABASE_URL=reader_url)
            assert "Traceback" not in result.stderr, (args, result.stderr)
            if args[0] == "doctor":
                assert re.search(r"^ok +postgres ", result.stdout, re.MULTILINE), result.stdout
                assert re.search(r"^ok +host +none running", result.stdout, re.MULTILINE), result.stdout
            else:
                assert result.returncode == 0, (args, result.stderr)
        assert "browser-1" in _corral(settings, "devices", CORRAL_DATABASE_URL=reader_url).stdout
    finally:
        for function in (
            "pg_advisory_lock(bigint)",
            "pg_try_advisory_lock(bigint)",
            "pg_advisory_xact_lock(bigint)",
        ):
            await db.execute(f"GRANT EXECUTE ON FUNCTION {function} TO PUBLIC")
        await db.execute(f"DROP OWNED BY {role}")
        await db.execute(f"DROP ROLE {role}")
    # Nothing written, no socket or directory made, the job untouched.
    assert await _rows(db) == before
    assert not settings.runtime_dir.exists()
    assert await db.fetchval("SELECT state || '/' || attempts FROM jobs WHERE kind = 'noop'") == "queued/0"


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


async def test_retry_without_a_host_queues_and_says_so(settings: Settings, db: asyncpg.Connection) -> None:
    job_id = await db.fetchval("INSERT INTO jobs (kind, state) VALUES ('noop', 'failed') RETURNING id")
    result = _corral(settings, "jobs", "retry", str(job_id))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        f"job {job_id} (noop) queued again",
        "no Corral host is running (open the window or run `corral serve`): the job waits for one",
    ]
    assert await db.fetchval("SELECT state FROM jobs WHERE id = $1", job_id) == "queued"
    assert await _host_lock_holders(db) == 0


async def test_rm_without_a_host_hosts_until_its_jobs_end(
    settings: Settings, db: asyncpg.Connection, docker_available: None
) -> None:
    await db.execute(
        "INSERT INTO devices (id, name, kind, state, reason) "
        "VALUES ('d0rm', 'browser-1', 'browser', 'failed', 'test')"
    )
    result = _corral(settings, "rm", "browser-1")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[:2] == [
        "removing browser-1",
        NO_HOST_HOSTS + " (Ctrl-C hands them back to the queue)",
    ]
    assert await db.fetchval("SELECT state FROM devices WHERE id = 'd0rm'") == "removed"
    assert [tuple(r) for r in await db.fetch("SELECT kind, state FROM jobs")] == [("remove", "succeeded")]
    assert await _host_lock_holders(db) == 0  # it stopped hosting and let go


async def test_with_a_host_running_rm_queues_and_returns(
    settings: Settings, db: asyncpg.Connection, docker_available: None
) -> None:
    await db.execute(
        "INSERT INTO devices (id, name, kind, state, reason) VALUES "
        "('d0a', 'browser-1', 'browser', 'failed', 'test'), ('d0b', 'browser-2', 'browser', 'failed', 'test')"
    )
    host = Serve(settings)
    try:
        host.wait_for("host role taken")
        queued = _corral(settings, "rm", "browser-1")
        assert queued.returncode == 0, queued.stderr
        assert queued.stdout.splitlines() == [
            "removing browser-1",
            "the running Corral host removes them; follow with `corral devices`",
        ]
        waited = _corral(settings, "rm", "--wait", "browser-2")
        assert waited.returncode == 0, waited.stderr
        assert await db.fetchval("SELECT state FROM devices WHERE id = 'd0b'") == "removed"
        doctor = _corral(settings, "doctor").stdout
        assert re.search(rf"^ok +host +\S+:{host.pid} \(since ", doctor, re.MULTILINE), doctor
        # The commands were clients: the host's log shows one host role, never given up.
        assert (host.count("host role taken"), host.count("host role released")) == (1, 0)
    finally:
        assert host.stop() == 0
    assert (host.count("host role taken"), host.count("host role released")) == (1, 1)


@pytest.mark.docker
def test_provision_list_remove(settings: Settings, docker_available: None) -> None:
    made = _corral(settings, "provision", "--kind", "browser", "--count", "2", "--wait")
    assert made.returncode == 0, made.stderr
    assert NO_HOST_HOSTS in made.stdout
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


def test_a_reader_that_leaves_early_is_not_an_error(settings: Settings) -> None:
    # `corral devices | head -0`: the reader is gone before the command writes.
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        result = subprocess.run(
            [sys.executable, "-m", "backend.cli", "devices"],
            # as a user runs it: no asyncio debug warnings on stderr
            env={k: v for k, v in cli_env(settings).items() if k != "PYTHONASYNCIODEBUG"},
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=300,
            check=False,
        )
    finally:
        os.close(write_end)
    assert (result.returncode, result.stderr) == (141, "")
