"""Device images: build ``<image_prefix>/<kind>:latest`` when it is missing or stale.

An image is up to date when its ``corral.content-hash`` label equals the hash of
its inputs (:mod:`backend.runtime.context`); checking that costs one inspect.
Otherwise :func:`build_image` makes sure the base image exists
(:mod:`backend.runtime.base_image`), fetches the agent's wheels on the host
(:mod:`backend.runtime.wheels`), and runs the classic builder with host
networking, reporting progress parsed from the build log.

Progress weights: base image 0-30 %, wheels 30-33 %, docker build 33-100 %.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import docker
import docker.errors

from backend.config.settings import Settings
from backend.runtime.base import ProgressCallback
from backend.runtime.base_image import base_image_ref, ensure_base_image
from backend.runtime.context import (
    HASH_LABEL,
    agent_requirements,
    build_context,
    content_hash,
    image_inputs,
    known_kinds,
)
from backend.runtime.exceptions import ImageBuildError
from backend.runtime.progress import BuildProgress, dockerfile_steps, scaled
from backend.runtime.sdk import DockerConnection
from backend.runtime.wheels import cached_wheels

__all__ = ["HASH_LABEL", "ImageStatus", "build_image", "image_ref", "image_status", "known_kinds"]

_LOG_TAIL_LINES = 25


def image_ref(settings: Settings, kind: str) -> str:
    """The tag a device of *kind* runs: ``<image_prefix>/<kind>:latest``."""
    return f"{settings.image_prefix}/{kind}:latest"


@dataclass(frozen=True, slots=True)
class ImageStatus:
    """What the daemon has for a kind compared with what its inputs say it should be."""

    ref: str
    wanted_hash: str
    image_id: str | None
    current_hash: str | None

    @property
    def up_to_date(self) -> bool:
        return self.image_id is not None and self.current_hash == self.wanted_hash


def _check_kind(kind: str) -> None:
    kinds = known_kinds()
    if kind not in kinds:
        raise ImageBuildError(
            f"No image recipe for device kind {kind!r} (known: {', '.join(kinds) or 'none'})."
        )


async def image_status(connection: DockerConnection, settings: Settings, kind: str) -> ImageStatus:
    """Compare the tagged image of *kind* with its inputs. One inspect; reads the recipe files."""
    _check_kind(kind)
    ref = image_ref(settings, kind)
    inputs = await asyncio.to_thread(image_inputs, kind)
    wanted = content_hash(inputs, agent_requirements(), base=base_image_ref(settings))

    def inspect(client: docker.DockerClient) -> Mapping[str, Any] | None:
        try:
            attrs: Mapping[str, Any] = client.api.inspect_image(ref)  # type: ignore[no-untyped-call]  # untyped in types-docker
        except docker.errors.ImageNotFound:
            return None
        return attrs

    attrs = await connection.call(inspect, error=ImageBuildError, action=f"inspect image {ref}")
    if attrs is None:
        return ImageStatus(ref, wanted, None, None)
    labels = (attrs.get("Config") or {}).get("Labels") or {}
    return ImageStatus(ref, wanted, str(attrs["Id"]), labels.get(HASH_LABEL))


async def build_image(
    connection: DockerConnection,
    settings: Settings,
    kind: str,
    progress: ProgressCallback | None = None,
    *,
    force: bool = False,
) -> str:
    """Return the reference of an up-to-date image of *kind*, building it if needed.

    With *force*, rebuild every layer (fresh packages from the mirror) even when
    the image is up to date; the base image is kept. *progress* is called on the
    event loop's thread. Cached (image up to date): one inspect, tens of ms.
    Raises ImageBuildError (unknown kind, base image, wheels or build failure,
    with the build log's tail) or RuntimeUnavailable.
    """
    report = progress or (lambda _fraction, _message: None)
    status = await image_status(connection, settings, kind)
    if status.up_to_date and not force:
        report(1.0, f"{status.ref} is up to date")
        return status.ref

    base = await ensure_base_image(connection, settings, scaled(progress, 0.0, 0.30))
    requirements = agent_requirements()
    wheels = await cached_wheels(
        requirements, settings.data_dir / "cache" / "wheels", scaled(progress, 0.30, 0.33)
    )
    inputs = await asyncio.to_thread(image_inputs, kind)
    context = await asyncio.to_thread(build_context, inputs, wheels, requirements)
    parser = BuildProgress(dockerfile_steps(inputs["Dockerfile"].decode()))
    build_report = scaled(progress, 0.33, 1.0)
    loop = asyncio.get_running_loop()
    repository = status.ref.rsplit(":", 1)[0]

    def build(client: docker.DockerClient) -> str:
        tail: list[str] = []
        image_id = None
        pending = ""
        stream = client.api.build(
            fileobj=context,
            custom_context=True,
            tag=status.ref,
            labels={HASH_LABEL: status.wanted_hash, "corral.kind": kind},
            buildargs={"BASE": base},
            network_mode="host",
            rm=True,
            forcerm=True,
            pull=False,
            nocache=force,
            decode=True,
        )
        for chunk in stream:
            if "error" in chunk:
                message = str(chunk.get("error", "")).strip()
                raise ImageBuildError(
                    f"Building {status.ref} failed: {message}\n" + "\n".join(tail[-_LOG_TAIL_LINES:])
                )
            if "aux" in chunk and isinstance(chunk["aux"], dict):
                image_id = chunk["aux"].get("ID", image_id)
            # Stream chunks are not line-aligned; split them into lines here.
            pending += str(chunk.get("stream", ""))
            *lines, pending = pending.split("\n")
            for line in lines:
                tail = [*tail[-(_LOG_TAIL_LINES - 1) :], line]
                if update := parser.feed(line):
                    loop.call_soon_threadsafe(build_report, *update)
        if image_id is None:
            raise ImageBuildError(f"Building {status.ref} ended without an image.\n" + "\n".join(tail))
        client.api.tag(image_id, repository, tag=status.wanted_hash[:12])
        return str(image_id)

    build_report(0.0, f"building {status.ref}")
    await connection.call(build, error=ImageBuildError, action=f"build {status.ref}")
    await _forget_superseded(connection, repository, keep=status.wanted_hash[:12])
    report(1.0, f"built {status.ref} ({status.wanted_hash[:12]})")
    return status.ref


async def _forget_superseded(connection: DockerConnection, repository: str, keep: str) -> None:
    """Untag older builds (``<repository>:<hash12>``) so each is deleted once no container uses it.

    Best effort: an image a container still uses keeps its tag and is tried
    again after the next build.
    """

    def untag(client: docker.DockerClient) -> None:
        for image in client.api.images(name=repository):
            for tag in image.get("RepoTags") or []:
                name, _, version = tag.rpartition(":")
                if name != repository or version in ("latest", keep) or len(version) != len(keep):
                    continue
                with contextlib.suppress(docker.errors.APIError):
                    client.api.remove_image(tag)

    await connection.call(untag, error=ImageBuildError, action=f"untag old builds of {repository}")
