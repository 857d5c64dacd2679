"""Wheels for the image's agent venv, downloaded on the host and cached.

Containers here cannot reach PyPI over HTTPS, so pip runs on the host for the
image's interpreter (CPython 3.11, manylinux x86_64 with glibc <= 2.36, what
Debian bookworm ships) and the wheels travel in the build context. The result is
cached under ``<data_dir>/cache/wheels/<hash of the requirements>/``; rebuilding
an image with the same requirement list downloads nothing.
"""

from __future__ import annotations

import asyncio
import hashlib
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from backend.runtime.base import ProgressCallback
from backend.runtime.exceptions import ImageBuildError

__all__ = ["PYTHON_VERSION", "cached_wheels", "pip_download_command", "wheel_cache_dir"]

PYTHON_VERSION = "3.11"
"""Debian bookworm's python3."""
_GLIBC_MINOR = 36
"""Debian bookworm's glibc is 2.36; wheels built for any older glibc run on it."""
_COMPLETE_MARKER = "requirements.txt"


def _platforms() -> list[str]:
    # pip does not expand a manylinux tag to older compatible ones when
    # --platform is given, so list them all, legacy aliases included.
    modern = [f"manylinux_2_{minor}_x86_64" for minor in range(_GLIBC_MINOR, 4, -1)]
    return [*modern, "manylinux2014_x86_64", "manylinux2010_x86_64", "manylinux1_x86_64"]


def pip_download_command(requirements: Sequence[str], dest: Path, python: str = sys.executable) -> list[str]:
    """The pip command that fetches binary wheels of *requirements* for the image into *dest*."""
    command = [python, "-m", "pip", "download", "--disable-pip-version-check", "--no-input"]
    command += ["--only-binary=:all:", "--python-version", PYTHON_VERSION]
    command += ["--implementation", "cp", "--abi", f"cp{PYTHON_VERSION.replace('.', '')}"]
    for platform in _platforms():
        command += ["--platform", platform]
    command += ["--dest", str(dest), *requirements]
    return command


def wheel_cache_dir(cache_root: Path, requirements: Sequence[str]) -> Path:
    key = "\n".join(sorted(requirements)) + f"\npython{PYTHON_VERSION}\n" + " ".join(_platforms())
    return cache_root / hashlib.sha256(key.encode()).hexdigest()[:16]


async def cached_wheels(
    requirements: Sequence[str],
    cache_root: Path,
    progress: ProgressCallback | None = None,
) -> list[Path]:
    """The wheel files for *requirements*, downloading them on a cache miss.

    Downloads into a temporary directory and renames it into place, so an
    interrupted download never looks complete. Raises ImageBuildError when pip
    fails (the message carries pip's last lines).
    """
    target = wheel_cache_dir(cache_root, requirements)
    cached = await asyncio.to_thread(_cached, target)
    if cached is not None:
        return cached
    if progress:
        progress(0.0, f"downloading wheels: {' '.join(requirements)}")
    staging = await asyncio.to_thread(_staging_dir, cache_root)
    try:
        process = await asyncio.create_subprocess_exec(
            *pip_download_command(requirements, staging),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        output, _ = await process.communicate()
        if process.returncode != 0:
            tail = "\n".join(output.decode(errors="replace").splitlines()[-8:])
            raise ImageBuildError(
                f"pip could not download the agent's wheels ({' '.join(requirements)}):\n{tail}"
            )
        wheels = await asyncio.to_thread(_commit, staging, target, requirements)
    finally:
        await asyncio.to_thread(shutil.rmtree, staging, True)
    if progress:
        progress(1.0, "wheels ready")
    return wheels


# Blocking file-system steps, run in a thread.


def _cached(target: Path) -> list[Path] | None:
    if (target / _COMPLETE_MARKER).is_file():
        return sorted(target.glob("*.whl"))
    return None


def _staging_dir(cache_root: Path) -> Path:
    cache_root.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=".wheels-", dir=cache_root))


def _commit(staging: Path, target: Path, requirements: Sequence[str]) -> list[Path]:
    """Mark the download complete and move it into place; return the cached wheels."""
    (staging / _COMPLETE_MARKER).write_text("".join(f"{r}\n" for r in requirements))
    try:
        staging.rename(target)
    except OSError:
        # Another build finished the same download first; use that one.
        if not (target / _COMPLETE_MARKER).is_file():
            raise
    return sorted(target.glob("*.whl"))
