"""Every backend, agent and client module exports exactly what its ``__all__`` promises."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

import agent
import backend
import corral


def _modules() -> list[str]:
    names = []
    for package in (agent, backend, corral):
        for info in pkgutil.walk_packages(package.__path__, prefix=f"{package.__name__}."):
            if ".migrations" not in info.name and info.name != "agent.__main__":
                names.append(info.name)
    return sorted(names)


@pytest.mark.parametrize("name", _modules())
def test_all_names_exist(name: str) -> None:
    module = importlib.import_module(name)
    exported = getattr(module, "__all__", [])
    assert [symbol for symbol in exported if not hasattr(module, symbol)] == []
    assert len(exported) == len(set(exported))


def test_the_app_facing_api_is_complete() -> None:
    api = importlib.import_module("backend.api")
    for name in ("Corral", "CorralError", "DeviceInfo", "JobInfo", "Health", "Settings", "DEVICE_KINDS"):
        assert name in api.__all__


def test_the_client_package_names_its_api() -> None:
    client = importlib.import_module("corral")
    for name in ("connect", "Client", "DeviceHandle", "RunResult", "StepResult", "CorralError", "FlowError"):
        assert name in client.__all__
