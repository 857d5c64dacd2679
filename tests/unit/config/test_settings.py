import pydantic
import pytest

from backend.config.settings import Settings, default_concurrency

GIB = 1 << 30


def test_default_concurrency_follows_cores_and_memory() -> None:
    assert default_concurrency(2, 24 * GIB) == 4
    assert default_concurrency(16, 24 * GIB) == 16
    assert default_concurrency(16, 6 * GIB) == 6
    assert default_concurrency(1, 1 * GIB) == 2


def test_environment_overrides(monkeypatch) -> None:
    monkeypatch.setenv("CORRAL_JOB_CONCURRENCY", "3")
    monkeypatch.setenv("CORRAL_DEVICE_NETWORK", "none")
    settings = Settings()
    assert settings.job_concurrency == 3
    assert settings.device_network == "none"


def test_grid_encoding_is_raw_unless_set_and_refuses_others(monkeypatch) -> None:
    assert Settings().grid_encoding == "raw"
    monkeypatch.setenv("CORRAL_GRID_ENCODING", "tight")
    assert Settings().grid_encoding == "tight"
    monkeypatch.setenv("CORRAL_GRID_ENCODING", "h264")
    with pytest.raises(pydantic.ValidationError, match="grid_encoding"):
        Settings()


def test_roots_data_dir_is_var_lib_not_its_home(monkeypatch) -> None:
    # As root the embedded Postgres runs as another user, which cannot enter /root.
    monkeypatch.delenv("CORRAL_DATA_DIR", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", "/home/someone/.local/share")
    monkeypatch.setattr("os.geteuid", lambda: 0)
    assert str(Settings().data_dir) == "/var/lib/corral"
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    assert str(Settings().data_dir) == "/home/someone/.local/share/corral"
