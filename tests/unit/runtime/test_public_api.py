"""Every runtime module exports exactly what its ``__all__`` promises."""

from __future__ import annotations

import importlib

import pytest

MODULES = [
    "backend.runtime.base_image",
    "backend.runtime.containers",
    "backend.runtime.context",
    "backend.runtime.docker",
    "backend.runtime.images",
    "backend.runtime.progress",
    "backend.runtime.sdk",
    "backend.runtime.wheels",
]


@pytest.mark.parametrize("name", MODULES)
def test_all_names_exist(name: str) -> None:
    module = importlib.import_module(name)
    missing = [symbol for symbol in module.__all__ if not hasattr(module, symbol)]
    assert missing == []
    assert sorted(module.__all__) == sorted(set(module.__all__))


def test_docker_runtime_satisfies_the_runtime_protocol() -> None:
    from backend.runtime.base import Runtime
    from backend.runtime.docker import DockerRuntime

    protocol_methods = {name for name in vars(Runtime) if not name.startswith("_")}
    assert protocol_methods <= set(vars(DockerRuntime))
