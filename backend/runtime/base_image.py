"""The Debian bookworm base image, pulled where a registry answers, bootstrapped where not.

``<image_prefix>/base:bookworm`` is, in order of preference: already there;
``debian:bookworm-slim`` pulled and tagged; or a ``debootstrap --variant=minbase``
root filesystem imported with ``tar -c | docker import``. Debootstrap uses the
Debian mirror the host's apt already uses and needs root (it chroots and creates
device nodes).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, cast

import docker
import docker.errors

from backend.config.settings import Settings
from backend.runtime.base import ProgressCallback
from backend.runtime.exceptions import ImageBuildError
from backend.runtime.progress import DebootstrapProgress
from backend.runtime.sdk import DockerConnection

__all__ = ["SUITE", "AptMirrors", "base_image_ref", "debian_mirrors", "ensure_base_image", "host_apt_sources"]

SUITE = "bookworm"
PULL_REPOSITORY, PULL_TAG = "debian", "bookworm-slim"
PULL_TIMEOUT_S = 30.0
"""Give up on the registry after this; a pull that gets nowhere is no registry."""
_DEFAULT_MIRROR = "http://deb.debian.org/debian"
_DEFAULT_SECURITY_MIRROR = "http://deb.debian.org/debian-security"
_IMPORT_CHANGES = [
    "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    'CMD ["bash"]',
]


@dataclass(frozen=True, slots=True)
class AptMirrors:
    main: str = _DEFAULT_MIRROR
    security: str = _DEFAULT_SECURITY_MIRROR

    def deb822(self) -> str:
        """The image's ``/etc/apt/sources.list.d/debian.sources`` (as in debian:bookworm-slim)."""
        keyring = "/usr/share/keyrings/debian-archive-keyring.gpg"
        return (
            f"Types: deb\nURIs: {self.main}\nSuites: {SUITE} {SUITE}-updates\nComponents: main\n"
            f"Signed-By: {keyring}\n\n"
            f"Types: deb\nURIs: {self.security}\nSuites: {SUITE}-security\nComponents: main\n"
            f"Signed-By: {keyring}\n"
        )


def base_image_ref(settings: Settings) -> str:
    return f"{settings.image_prefix}/base:{SUITE}"


def _source_entries(text: str) -> Iterable[tuple[list[str], list[str]]]:
    """(URIs, suites) of each deb entry of an apt sources text, one-line or deb822 format."""
    stanza: dict[str, str] = {}
    for raw in [*text.splitlines(), ""]:
        line = raw.split("#", 1)[0].rstrip() if not raw.lstrip().startswith("#") else ""
        if line.startswith(("deb ", "deb\t")):
            words = line.split()[1:]
            if words and words[0].startswith("["):
                while words and not words[0].endswith("]"):
                    words.pop(0)
                words = words[1:]
            if len(words) >= 2:
                yield [words[0]], [words[1]]
            continue
        if ":" in line and not line.startswith((" ", "\t")):
            key, value = line.split(":", 1)
            stanza[key.strip().lower()] = value.strip()
            continue
        if not raw.strip() and stanza:
            if "deb" in stanza.get("types", "").split() and stanza.get("enabled", "yes").lower() != "no":
                yield stanza.get("uris", "").split(), stanza.get("suites", "").split()
            stanza = {}


def debian_mirrors(source_texts: Iterable[str]) -> AptMirrors:
    """The mirrors the host uses for bookworm and bookworm-security; deb.debian.org if none.

    Only http(s) URIs count (not file:, cdrom:, or a mirror+ list).
    """
    main = security = None
    for text in source_texts:
        for uris, suites in _source_entries(text):
            web_uris = [uri.rstrip("/") for uri in uris if uri.startswith(("http://", "https://"))]
            if not web_uris:
                continue
            if main is None and SUITE in suites:
                main = web_uris[0]
            if security is None and f"{SUITE}-security" in suites:
                security = web_uris[0]
    return AptMirrors(main or _DEFAULT_MIRROR, security or _DEFAULT_SECURITY_MIRROR)


def host_apt_sources(root: Path = Path("/etc/apt")) -> list[str]:
    """Texts of the host's apt source files (sources.list first). Blocking file reads."""
    paths = [root / "sources.list"]
    paths += sorted((root / "sources.list.d").glob("*.list")) if (root / "sources.list.d").is_dir() else []
    paths += sorted((root / "sources.list.d").glob("*.sources")) if (root / "sources.list.d").is_dir() else []
    texts = []
    for path in paths:
        try:
            texts.append(path.read_text(errors="replace"))
        except OSError:
            continue
    return texts


async def ensure_base_image(
    connection: DockerConnection,
    settings: Settings,
    progress: ProgressCallback | None = None,
) -> str:
    """Make sure the base image exists; return its reference.

    Raises ImageBuildError when neither a pull nor debootstrap can provide it,
    RuntimeUnavailable when the daemon cannot be reached.
    """
    ref = base_image_ref(settings)
    repository, tag = ref.rsplit(":", 1)
    report = progress or (lambda _fraction, _message: None)

    def exists(client: docker.DockerClient) -> bool:
        try:
            client.api.inspect_image(ref)  # type: ignore[no-untyped-call]  # untyped in types-docker
        except docker.errors.ImageNotFound:
            return False
        return True

    if await connection.call(exists, error=ImageBuildError, action=f"inspect {ref}"):
        return ref

    report(0.0, f"pulling {PULL_REPOSITORY}:{PULL_TAG}")
    pulled = await _try_pull(connection, repository, tag)
    if pulled is None:
        report(1.0, f"base image {ref} pulled")
        return ref
    report(0.01, f"no registry ({pulled}); bootstrapping {SUITE} with debootstrap")
    await _bootstrap(connection, settings, repository, tag, report)
    report(1.0, f"base image {ref} bootstrapped")
    return ref


async def _try_pull(connection: DockerConnection, repository: str, tag: str) -> str | None:
    """Pull and tag the slim image; None on success, else why it failed."""

    def pull(client: docker.DockerClient) -> None:
        for chunk in client.api.pull(PULL_REPOSITORY, tag=PULL_TAG, stream=True, decode=True):
            if isinstance(chunk, dict) and chunk.get("error"):
                raise ImageBuildError(str(chunk["error"]))
        client.api.tag(f"{PULL_REPOSITORY}:{PULL_TAG}", repository, tag=tag)

    try:
        # The SDK sets no read timeout on pulls; the thread is abandoned on timeout
        # and finishes (or fails) on its own.
        await asyncio.wait_for(
            connection.call(pull, error=ImageBuildError, action=f"pull {PULL_REPOSITORY}:{PULL_TAG}"),
            PULL_TIMEOUT_S,
        )
    except TimeoutError:
        return f"no answer within {PULL_TIMEOUT_S:.0f} s"
    except ImageBuildError as exc:
        return str(exc).splitlines()[0][:200]
    return None


async def _bootstrap(
    connection: DockerConnection,
    settings: Settings,
    repository: str,
    tag: str,
    report: ProgressCallback,
) -> None:
    if os.geteuid() != 0:
        raise ImageBuildError(
            "No registry is reachable, and bootstrapping the base image with debootstrap needs root. "
            "Run `sudo corral images build` once, or `docker load` a debian:bookworm-slim image."
        )
    if shutil.which("debootstrap") is None:
        raise ImageBuildError(
            "No registry is reachable and debootstrap is not installed: `sudo apt-get install debootstrap`."
        )
    mirrors = debian_mirrors(await asyncio.to_thread(host_apt_sources))
    work = settings.data_dir / "cache"
    await asyncio.to_thread(work.mkdir, parents=True, exist_ok=True)
    rootfs = Path(tempfile.mkdtemp(prefix="base-rootfs-", dir=work))
    try:
        await _debootstrap(rootfs, mirrors, report)
        await asyncio.to_thread(_finish_rootfs, rootfs, mirrors)
        report(0.98, f"importing the root filesystem as {repository}:{tag}")

        def import_rootfs(client: docker.DockerClient) -> None:
            _import_rootfs(client, rootfs, repository, tag)

        await connection.call(import_rootfs, error=ImageBuildError, action=f"import {repository}:{tag}")
    finally:
        await asyncio.to_thread(shutil.rmtree, rootfs, True)


async def _debootstrap(rootfs: Path, mirrors: AptMirrors, report: ProgressCallback) -> None:
    command = ["debootstrap", "--variant=minbase"]
    if mirrors.main.startswith("https:") or mirrors.security.startswith("https:"):
        # apt inside the image needs CA certificates before it can install any.
        command.append("--include=ca-certificates")
    command += [SUITE, str(rootfs), mirrors.main]
    process = await asyncio.create_subprocess_exec(
        *command,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        stdin=asyncio.subprocess.DEVNULL,
    )
    parser = DebootstrapProgress()
    tail: list[str] = []
    assert process.stdout is not None
    async for raw in process.stdout:
        line = raw.decode(errors="replace").rstrip()
        tail = [*tail[-19:], line]
        if update := parser.feed(line):
            report(0.02 + 0.94 * update[0], update[1])
    if await process.wait() != 0:
        details = await asyncio.to_thread(_debootstrap_log_tail, rootfs) or tail
        raise ImageBuildError(f"debootstrap {SUITE} from {mirrors.main} failed:\n" + "\n".join(details))


def _debootstrap_log_tail(rootfs: Path) -> list[str]:
    log = rootfs / "debootstrap" / "debootstrap.log"
    return log.read_text(errors="replace").splitlines()[-10:] if log.is_file() else []


def _finish_rootfs(rootfs: Path, mirrors: AptMirrors) -> None:
    """Point apt at the host's mirrors (with updates and security) and drop caches. Blocking."""
    (rootfs / "etc/apt/sources.list").unlink(missing_ok=True)
    sources = rootfs / "etc/apt/sources.list.d"
    sources.mkdir(parents=True, exist_ok=True)
    (sources / "debian.sources").write_text(mirrors.deb822())
    for cache in ("var/cache/apt/archives", "var/lib/apt/lists"):
        for entry in (rootfs / cache).glob("*"):
            if entry.is_file():
                entry.unlink()


def _import_rootfs(client: docker.DockerClient, rootfs: Path, repository: str, tag: str) -> None:
    """``tar -C rootfs -c . | docker import``, streamed. Blocking."""
    with subprocess.Popen(
        ["tar", "--numeric-owner", "-C", str(rootfs), "-c", "."],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    ) as tar:
        stream = cast(IO[bytes], tar.stdout)
        answer = client.api.import_image(
            src=stream, repository=repository, tag=tag, changes=_IMPORT_CHANGES, stream_src=True
        )
        # The daemon reports a failed import inside a 200 response's JSON stream.
        if '"error"' in str(answer):
            raise ImageBuildError(f"docker import of the base root filesystem failed: {answer}")
        stderr = tar.stderr.read() if tar.stderr else b""
        if tar.wait() != 0:
            raise ImageBuildError(
                f"tar of the base root filesystem failed: {stderr.decode(errors='replace')}"
            )
