"""The container contract, checked on the pure create request."""

from __future__ import annotations

from pathlib import Path

import pytest

from backend.config.settings import Settings
from backend.runtime.base import DeviceSpec, Instance
from backend.runtime.containers import (
    choose_network_mode,
    container_config,
    container_name,
    instance_from_attrs,
    instance_from_summary,
    owner_id,
)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path, device_uid=4321, device_cpus=1.5, device_memory_mb=768)


@pytest.fixture
def spec() -> DeviceSpec:
    return DeviceSpec(
        device_id="dev1",
        name="Checkout 1",
        kind="browser",
        runtime_dir=Path("/tmp/crl-x/dev1"),
        env={"CORRAL_AGENT_TOKEN": "tok", "CORRAL_DEVICE_ID": "spoofed"},
    )


def test_name_labels_and_image(spec: DeviceSpec, settings: Settings) -> None:
    config = container_config(spec, settings, "corral/browser:latest", "none", "owner1")

    assert config.create["name"] == container_name("dev1") == "corral-dev1"
    assert config.create["image"] == "corral/browser:latest"
    assert config.create["labels"] == {
        "corral.device": "dev1",
        "corral.kind": "browser",
        "corral.name": "Checkout 1",
        "corral.owner": "owner1",
    }


def test_runs_as_the_device_uid_without_privileges(spec: DeviceSpec, settings: Settings) -> None:
    config = container_config(spec, settings, "img", "none", "owner1")

    assert config.create["user"] == "4321:4321"
    assert config.create["environment"]["HOME"] == "/tmp/home"
    assert config.host["cap_drop"] == ["ALL"]
    assert config.host["security_opt"] == ["no-new-privileges"]
    assert "privileged" not in config.host
    assert "cap_add" not in config.host


def test_publishes_no_ports(spec: DeviceSpec, settings: Settings) -> None:
    config = container_config(spec, settings, "img", "bridge", "owner1")

    assert "ports" not in config.create
    assert "port_bindings" not in config.host
    assert "publish_all_ports" not in config.host


def test_mounts_only_the_runtime_dir_at_run_corral(spec: DeviceSpec, settings: Settings) -> None:
    config = container_config(spec, settings, "img", "none", "owner1")

    assert config.host["mounts"] == [
        {"Type": "bind", "Source": "/tmp/crl-x/dev1", "Target": "/run/corral", "ReadOnly": False}
    ]
    assert list(config.host["tmpfs"]) == ["/tmp"]


def test_limits_follow_settings(spec: DeviceSpec, settings: Settings) -> None:
    config = container_config(spec, settings, "img", "none", "owner1")

    assert config.host["mem_limit"] == "768m"
    assert config.host["memswap_limit"] == "768m"
    assert config.host["nano_cpus"] == 1_500_000_000
    assert config.host["pids_limit"] > 0
    assert config.host["shm_size"] == "256m"


def test_environment_adds_identity_over_spec_env(spec: DeviceSpec, settings: Settings) -> None:
    environment = container_config(spec, settings, "img", "none", "owner1").create["environment"]

    assert environment["CORRAL_AGENT_TOKEN"] == "tok"
    assert environment["CORRAL_DEVICE_ID"] == "dev1"
    assert environment["CORRAL_DEVICE_NAME"] == "Checkout 1"


def test_healthcheck_waits_for_the_vnc_socket(spec: DeviceSpec, settings: Settings) -> None:
    config = container_config(spec, settings, "img", "none", "owner1")

    assert config.create["healthcheck"]["test"] == ["CMD", "test", "-S", "/run/corral/vnc.sock"]
    assert config.create["stop_timeout"] <= 2


def test_network_mode_is_passed_through(spec: DeviceSpec, settings: Settings) -> None:
    assert container_config(spec, settings, "img", "none", "owner1").host["network_mode"] == "none"


@pytest.mark.parametrize(
    ("configured", "daemon_networks", "expected"),
    [
        ("none", ["bridge", "host", "none"], "none"),
        ("bridge", ["host", "none"], "bridge"),
        (None, ["bridge", "host", "none"], "bridge"),
        (None, ["host", "none"], "none"),
        (None, [], "none"),
    ],
)
def test_choose_network_mode(configured: str | None, daemon_networks: list[str], expected: str) -> None:
    assert choose_network_mode(configured, daemon_networks) == expected


def test_instance_from_inspect_data() -> None:
    attrs = {
        "Id": "abc",
        "State": {"Status": "exited", "ExitCode": 137},
        "Config": {"Labels": {"corral.device": "dev1"}},
    }
    assert instance_from_attrs(attrs) == Instance("dev1", "abc", "exited", 137)

    running = {**attrs, "State": {"Status": "running", "ExitCode": 0}}
    assert instance_from_attrs(running) == Instance("dev1", "abc", "running", None)


def test_instance_from_list_summary() -> None:
    summary = {
        "Id": "abc",
        "State": "exited",
        "Status": "Exited (1) 3 seconds ago",
        "Labels": {"corral.device": "dev1"},
    }
    assert instance_from_summary(summary) == Instance("dev1", "abc", "exited", 1)

    running = {**summary, "State": "running", "Status": "Up 2 minutes (healthy)"}
    assert instance_from_summary(running) == Instance("dev1", "abc", "running", None)


def test_owner_id_is_stable_per_host_and_data_dir(tmp_path: Path) -> None:
    here = Settings(data_dir=tmp_path / "a")

    assert owner_id(here, "host1") == owner_id(Settings(data_dir=tmp_path / "a"), "host1")
    assert owner_id(here, "host1") != owner_id(Settings(data_dir=tmp_path / "b"), "host1")
    assert owner_id(here, "host1") != owner_id(here, "host2")
    assert len(owner_id(here)) == 16
