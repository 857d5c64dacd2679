"""Settings refuse values that would only fail later, and name typos."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from backend.config import Settings, settings_problems, unknown_variables


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("postgresql://u:p@db/corral", "postgresql+asyncpg://u:p@db/corral"),
        ("postgres://u@db/corral", "postgresql+asyncpg://u@db/corral"),
        ("postgresql+asyncpg://u@db/corral", "postgresql+asyncpg://u@db/corral"),
        ("", None),
    ],
)
def test_postgres_urls_get_the_driver(given: str, stored: str | None) -> None:
    assert Settings(database_url=given).database_url == stored


@pytest.mark.parametrize(
    ("variable", "value", "line"),
    [
        (
            "CORRAL_DATABASE_URL",
            "mysql://x",
            "CORRAL_DATABASE_URL: must be a Postgres URL: postgresql://user:password@host/database"
            " (got 'mysql://x')",
        ),
        (
            "CORRAL_STREAM_PORT",
            "99999",
            "CORRAL_STREAM_PORT: Input should be less than or equal to 65535 (got '99999')",
        ),
        (
            "CORRAL_JOB_CONCURRENCY",
            "0",
            "CORRAL_JOB_CONCURRENCY: Input should be greater than or equal to 1 (got '0')",
        ),
        (
            "CORRAL_DEVICE_MEMORY_MB",
            "-5",
            "CORRAL_DEVICE_MEMORY_MB: Input should be greater than or equal to 64 (got '-5')",
        ),
        (
            "CORRAL_DEVICE_UID",
            "-1",
            "CORRAL_DEVICE_UID: Input should be greater than or equal to 0 (got '-1')",
        ),
        (
            "CORRAL_BOOT_TIMEOUT",
            "0",
            "CORRAL_BOOT_TIMEOUT: Input should be greater than 0 (got '0')",
        ),
        (
            "CORRAL_STREAM_HOST",
            "0.0.0.0",
            "CORRAL_STREAM_HOST: must be an IPv4 loopback address such as 127.0.0.1 (the proxy is local only)"
            " (got '0.0.0.0')",
        ),
    ],
)
def test_bad_values_are_named_in_one_line(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, line: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValidationError) as caught:
        Settings()
    assert settings_problems(caught.value) == [line]


def test_typos_are_named() -> None:
    environ = {"CORRAL_BOGUS": "1", "CORRAL_DATA_DIR": "/x", "CORRAL_REQUIRE": "docker", "PATH": "/bin"}
    assert unknown_variables(environ) == ["CORRAL_BOGUS"]
