"""The soak's decisions (which fault, on what; when a fault counts as survived), without a farm."""

import argparse
import random
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from backend.config import Settings
from backend.types import DeviceInfo
from bench.soak import Soak
from bench.soak_farm import Container
from bench.soak_model import View, Watch

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def make_soak(tmp_path: Path, seed: int = 1) -> Soak:
    args = argparse.Namespace(devices=(4, 8), recovery_timeout=120.0)
    settings = Settings(data_dir=tmp_path / "data", runtime_dir=tmp_path / "run")
    none: Any = None  # host, Postgres and Docker are not touched by these decisions
    return Soak(args, tmp_path, settings, none, none, none, rng=random.Random(seed), started=0.0)


def view_of(
    states: dict[str, str], *, at: float = 1000.0, agents: dict[str, list[int]] | None = None
) -> View:
    devices = {i: DeviceInfo(i, f"browser-{i}", "browser", s, None, T0, T0) for i, s in states.items()}
    running = {i: Container(i, "c" + i, "running") for i, s in states.items() if s != "removed"}
    agents = agents if agents is not None else {i: [100 + n] for n, i in enumerate(running)}
    return View(at, devices, running, agents, set(running), True, True)


def draws(soak: Soak, view: View, count: int = 300) -> set[str]:
    return {soak.choose(view) for _ in range(count)}


def test_below_the_floor_only_provisions(tmp_path: Path) -> None:
    soak = make_soak(tmp_path)
    assert draws(soak, view_of({"a": "ready", "b": "ready", "c": "ready", "d": "removed"})) == {"provision"}


def test_between_the_bounds_every_fault_comes_up(tmp_path: Path) -> None:
    soak = make_soak(tmp_path)
    view = view_of({k: "ready" for k in "abcde"})
    assert draws(soak, view) == {
        "provision",
        "remove",
        "docker_kill",
        "agent_kill",
        "host_kill",
        "postgres_restart",
    }


def test_at_the_floor_never_removes_and_at_the_ceiling_never_provisions(tmp_path: Path) -> None:
    soak = make_soak(tmp_path)
    assert "remove" not in draws(soak, view_of({k: "ready" for k in "abcd"}))
    assert "provision" not in draws(soak, view_of({k: "ready" for k in "abcdefgh"}))


def test_no_farm_wide_fault_while_one_heals_or_within_the_gap(tmp_path: Path) -> None:
    soak = make_soak(tmp_path)
    view = view_of({k: "ready" for k in "abcde"})
    soak.watches.append(Watch(1, "postgres_restart", None, 900.0))
    assert draws(soak, view) == {"provision", "remove", "docker_kill", "agent_kill"}
    soak.watches[0].outcome = "lost"
    soak.last_heavy = 980.0  # 20 s before the view: inside the 30 s gap
    assert draws(soak, view) == {"provision", "remove", "docker_kill", "agent_kill"}
    soak.last_heavy = 960.0
    assert {"host_kill", "postgres_restart"} <= draws(soak, view)


def test_a_device_still_healing_is_not_killed_again(tmp_path: Path) -> None:
    soak = make_soak(tmp_path)
    view = view_of({k: "ready" for k in "abcd"})
    view.containers["d"] = Container("d", "cd", "exited")
    soak.watches.append(Watch(1, "docker_kill", "a", 990.0))
    soak.watches.append(Watch(2, "agent_kill", "b", 990.0, outcome="survived"))
    assert soak.killable(view) == ["b", "c"]


def test_an_agent_kill_survives_only_with_a_new_agent_process(tmp_path: Path) -> None:
    soak = make_soak(tmp_path)
    watch = Watch(1, "agent_kill", "a", 990.0, agents_before=frozenset({100}))
    soak.watches.append(watch)
    soak.judge(view_of({"a": "ready"}, at=995.0, agents={"a": [100]}))
    assert watch.outcome is None
    soak.judge(view_of({"a": "ready"}, at=997.5, agents={"a": [731]}))
    assert (watch.outcome, watch.recovered_after) == ("survived", 7.5)


def test_a_device_not_ready_is_not_survived_even_with_a_new_agent(tmp_path: Path) -> None:
    soak = make_soak(tmp_path)
    watch = Watch(1, "docker_kill", "a", 990.0, agents_before=frozenset({100}))
    soak.watches.append(watch)
    view = view_of({"a": "ready"}, at=995.0, agents={"a": [731]})
    view.connected.clear()  # the new agent has not reached the hub yet
    soak.judge(view)
    assert watch.outcome is None


@pytest.mark.parametrize(("fault", "outcome"), [("docker_kill", "superseded"), ("remove", None)])
def test_removing_the_device_supersedes_its_pending_fault(
    tmp_path: Path, fault: str, outcome: str | None
) -> None:
    soak = make_soak(tmp_path)
    watch = Watch(1, fault, "a", 990.0)
    soak.watches.append(watch)
    soak.removal_requested.add("a")
    soak.judge(view_of({"a": "stopping"}, at=995.0))
    assert watch.outcome == outcome


def test_a_fault_not_healed_in_time_is_lost_with_what_was_seen(tmp_path: Path) -> None:
    soak = make_soak(tmp_path)
    watch = Watch(1, "docker_kill", "a", 870.0, agents_before=frozenset({100}))
    soak.watches.append(watch)
    view = view_of({"a": "ready"}, at=995.0, agents={"a": []})
    view.containers["a"] = Container("a", "ca", "exited")
    view.connected.clear()
    soak.judge(view)
    assert (watch.outcome, watch.detail) == ("lost", "device ready, container exited, agent not connected")


def test_a_postgres_restart_needs_the_host_lock_back(tmp_path: Path) -> None:
    soak = make_soak(tmp_path)
    watch = Watch(1, "postgres_restart", None, 990.0, ready_before=frozenset({"a", "b"}))
    soak.watches.append(watch)
    view = view_of({"a": "ready", "b": "ready"}, at=1000.0)
    view.host_lock = False
    soak.judge(view)
    assert watch.outcome is None
    view.host_lock = True
    soak.judge(view)
    assert (watch.outcome, watch.recovered_after) == ("survived", 10.0)


def test_a_removed_device_is_survived_once_its_container_and_directory_are_gone(tmp_path: Path) -> None:
    soak = make_soak(tmp_path)
    watch = Watch(1, "remove", "a", 990.0)
    soak.watches.append(watch)
    soak.removal_requested.add("a")
    soak.settings.device_dir("a").mkdir(parents=True)
    view = view_of({"a": "removed"}, at=995.0)
    soak.judge(view)
    assert watch.outcome is None  # its runtime directory is still there
    soak.settings.device_dir("a").rmdir()
    soak.judge(view)
    assert watch.outcome == "survived"
