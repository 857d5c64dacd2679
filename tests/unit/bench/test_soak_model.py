import argparse
from datetime import UTC, datetime
from pathlib import Path

import pytest

from backend.config import Settings
from backend.types import DeviceInfo
from bench.soak_farm import Container, parse_ss_peers, postgres_options
from bench.soak_model import View, device_of, farm_differences, parse_devices, within

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def device(device_id: str, state: str) -> DeviceInfo:
    return DeviceInfo(device_id, f"browser-{device_id}", "browser", state, None, T0, T0)


@pytest.mark.parametrize(("text", "bounds"), [("4..8", (4, 8)), ("6", (6, 6)), ("1..16", (1, 16))])
def test_parse_devices(text: str, bounds: tuple[int, int]) -> None:
    assert parse_devices(text) == bounds


@pytest.mark.parametrize("text", ["8..4", "0..3", "4..17", "four", "4..", "..8"])
def test_parse_devices_refuses(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        parse_devices(text)


@pytest.mark.parametrize(
    ("baseline", "final", "ok"),
    [
        (100, 110, True),
        (100, 90, True),
        (100, 110.5, False),
        (100, 89, False),
        (64, 70, True),
        (64, 71, False),
    ],
)
def test_within_ten_percent(baseline: float, final: float, ok: bool) -> None:
    assert within(baseline, final) is ok


def test_farm_agrees() -> None:
    devices = {
        "a": device("a", "ready"),
        "b": device("b", "booting"),
        "c": device("c", "removed"),
        "d": device("d", "failed"),
    }
    containers = {"a": Container("a", "ca", "running"), "b": Container("b", "cb", "running")}
    assert farm_differences(devices, containers) == []


def test_farm_differences_are_named() -> None:
    devices = {
        "a": device("a", "ready"),
        "c": device("c", "removed"),
        "d": device("d", "failed"),
    }
    containers = {
        "a": Container("a", "ca", "exited"),
        "c": Container("c", "cc", "exited"),
        "d": Container("d", "cd", "running"),
        "x": Container("x", "cx", "running"),
    }
    assert farm_differences(devices, containers) == [
        "browser-a is ready but its container is not running",
        "container of d runs but the device is failed",
        "container of x runs but the device is unknown to the database",
        "a exited container is left for removed device c",
    ]


def test_ready_needs_state_container_and_agent() -> None:
    devices = {"a": device("a", "ready"), "b": device("b", "ready"), "c": device("c", "booting")}
    containers = {k: Container(k, "c" + k, "running") for k in "abc"}
    view = View(0.0, devices, containers, {}, {"a", "c"}, True, True)
    assert [view.ready(k) for k in "abcz"] == [True, False, False, False]


def test_parse_ss_peers_takes_the_peer_inode_of_that_pid() -> None:
    output = (
        "u_str ESTAB 0 0 /proc/self/fd/63/hub.sock 118829 * 118828 "
        'users:(("python",pid=6388,fd=60))\n'
        'u_str ESTAB 0 0 * 118828 * 118829 users:(("python",pid=10750,fd=6))\n'
        'u_str ESTAB 0 0 * 118826 * 118827 users:(("python",pid=10750,fd=4))\n'
        'u_str LISTEN 0 4096 /run/x.sock 4541 * 0 users:(("python",pid=10750,fd=7))\n'
        'u_str ESTAB 0 0 * 5 * 6 users:(("python",pid=107500,fd=4))\n'
    )
    assert parse_ss_peers(output, 10750) == {118829, 118827}
    assert parse_ss_peers(output, 6388) == {118828}


def test_postgres_options_keep_all_but_binary_and_data_dir() -> None:
    opts = '/opt/pg/bin/postgres "-D" "/tmp/cso-1/data/pgdata" "-h" "" "-k" "/tmp/cso-1/data/pgdata"\n'
    assert postgres_options(opts) == "-h '' -k /tmp/cso-1/data/pgdata"


def test_device_of() -> None:
    settings = Settings(data_dir=Path("/d"), runtime_dir=Path("/r"))
    assert device_of("/r/devices/abc/hub.sock", settings) == "abc"
    assert device_of("/r/devices/abc", settings) == "abc"
    assert device_of("/r/other/abc", settings) is None
