"""The Docker runtime fits the Runtime seam."""

from __future__ import annotations


def test_docker_runtime_satisfies_the_runtime_protocol() -> None:
    from backend.runtime.base import Runtime
    from backend.runtime.docker import DockerRuntime

    protocol_methods = {name for name in vars(Runtime) if not name.startswith("_")}
    assert protocol_methods <= set(vars(DockerRuntime))
