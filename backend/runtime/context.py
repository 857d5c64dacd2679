"""A device image's build inputs, their content hash, and the build context tar.

Inputs of kind *k* are every file under ``backend/runtime/images/<k>/`` plus the
agent's source (``agent/`` package, as ``agent-src/agent/...``) and the agent's
Python requirement list. Their hash labels the image; an image whose label
matches is up to date. Wheels are not hashed (they follow from the requirement
list), so checking an image needs no download.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import io
import tarfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import agent

__all__ = [
    "AGENT_DISTRIBUTIONS",
    "HASH_LABEL",
    "IMAGES_DIR",
    "agent_requirements",
    "build_context",
    "content_hash",
    "image_inputs",
    "known_kinds",
]

IMAGES_DIR = Path(__file__).parent / "images"
AGENT_DIR = Path(agent.__file__).parent
HASH_LABEL = "corral.content-hash"
_HASH_VERSION = b"corral-image-inputs-v1"

AGENT_DISTRIBUTIONS = ("pydantic", "websockets", "playwright", "pyzbar", "pillow")
"""What the agent imports besides the standard library: the protocol's (agent/protocol.py) and the
browser driver's (agent/drivers/: Playwright drives Chromium, pyzbar and Pillow read QR codes)."""

_FALLBACK_REQUIREMENTS = {
    "pydantic": "pydantic>=2.7,<3",
    "websockets": "websockets>=13",
    # The driver is written against this Playwright; Debian's Chromium is checked with it.
    "playwright": "playwright==1.65.2",
    "pyzbar": "pyzbar==0.1.9",
    # The backend does not use Pillow, so the host may lack it: pin what the image was tested with.
    "pillow": "pillow==13.0.0",
}
_SKIPPED_PARTS = {"__pycache__", ".mypy_cache", ".pytest_cache", ".ruff_cache"}


def known_kinds() -> list[str]:
    """Kinds with a recipe: each directory of IMAGES_DIR holding a Dockerfile."""
    return sorted(p.parent.name for p in IMAGES_DIR.glob("*/Dockerfile"))


def _files_under(root: Path, prefix: str) -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root)
        if not path.is_file() or _SKIPPED_PARTS.intersection(relative.parts):
            continue
        if path.suffix in (".pyc", ".pyo") or any(part.startswith(".") for part in relative.parts):
            continue
        files[f"{prefix}{relative.as_posix()}"] = path.read_bytes()
    return files


def image_inputs(kind: str, images_dir: Path = IMAGES_DIR, agent_dir: Path = AGENT_DIR) -> dict[str, bytes]:
    """Context path -> content for every hashed input of *kind*. Reads files (fast, small).

    Raises FileNotFoundError when *kind* has no Dockerfile.
    """
    recipe = images_dir / kind
    if not (recipe / "Dockerfile").is_file():
        raise FileNotFoundError(recipe / "Dockerfile")
    inputs = _files_under(recipe, "")
    inputs.update(_files_under(agent_dir, f"agent-src/{agent_dir.name}/"))
    return inputs


def agent_requirements() -> list[str]:
    """Pinned requirements for the image's agent venv: the versions the backend runs.

    The agent and the backend share ``agent.protocol``; pinning the image to the
    host's versions keeps both sides validating messages the same way. Packages
    the host lacks fall back to a compatible range.
    """
    requirements = []
    for name in AGENT_DISTRIBUTIONS:
        try:
            requirements.append(f"{name}=={importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            requirements.append(_FALLBACK_REQUIREMENTS[name])
    return requirements


def content_hash(inputs: Mapping[str, bytes], requirements: Sequence[str], base: str = "") -> str:
    """sha256 (hex) over the inputs' paths and bytes, the requirement list and the base image name.

    Independent of the mapping's order and of the order of *requirements*.
    """
    digest = hashlib.sha256(_HASH_VERSION)
    for path in sorted(inputs):
        data = inputs[path]
        digest.update(b"\0file\0" + path.encode() + b"\0" + str(len(data)).encode() + b"\0")
        digest.update(data)
    for requirement in sorted(requirements):
        digest.update(b"\0requirement\0" + requirement.encode())
    digest.update(b"\0base\0" + base.encode())
    return digest.hexdigest()


def build_context(
    inputs: Mapping[str, bytes], wheels: Iterable[Path], requirements: Sequence[str]
) -> io.BytesIO:
    """An uncompressed tar of the inputs plus ``wheels/`` (the files and requirements.txt).

    Entries get fixed owners and times so equal inputs give equal tars. Shell
    scripts and Python files are mode 0755, everything else 0644 (the image runs
    them as a non-root uid).
    """
    buffer = io.BytesIO()
    entries = dict(inputs)
    for wheel in wheels:
        entries[f"wheels/{wheel.name}"] = wheel.read_bytes()
    entries["wheels/requirements.txt"] = "".join(f"{r}\n" for r in requirements).encode()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(entries):
            data = entries[path]
            info = tarfile.TarInfo(path)
            info.size = len(data)
            info.mode = 0o755 if path.endswith((".sh", ".py")) else 0o644
            info.mtime = 0
            tar.addfile(info, io.BytesIO(data))
    buffer.seek(0)
    return buffer
