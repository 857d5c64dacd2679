"""Host-side wheel download for the image's agent venv."""

from __future__ import annotations

from pathlib import Path

from backend.runtime.wheels import cached_wheels, pip_download_command, wheel_cache_dir


def test_pip_targets_the_image_interpreter(tmp_path: Path) -> None:
    command = pip_download_command(["pydantic==2.0"], tmp_path, python="py")

    assert command[:4] == ["py", "-m", "pip", "download"]
    assert "--only-binary=:all:" in command
    assert command[command.index("--python-version") + 1] == "3.11"
    assert command[command.index("--abi") + 1] == "cp311"
    platforms = {command[i + 1] for i, word in enumerate(command) if word == "--platform"}
    # glibc 2.36 (bookworm) runs wheels for any older glibc, legacy tags included
    assert {
        "manylinux_2_36_x86_64",
        "manylinux_2_17_x86_64",
        "manylinux2014_x86_64",
        "manylinux1_x86_64",
    } <= platforms
    assert "manylinux_2_38_x86_64" not in platforms
    assert command[-1] == "pydantic==2.0"


def test_cache_dir_depends_on_the_requirements_only(tmp_path: Path) -> None:
    assert wheel_cache_dir(tmp_path, ["a==1", "b==2"]) == wheel_cache_dir(tmp_path, ["b==2", "a==1"])
    assert wheel_cache_dir(tmp_path, ["a==1"]) != wheel_cache_dir(tmp_path, ["a==2"])


async def test_a_complete_cache_entry_is_used_without_pip(tmp_path: Path) -> None:
    target = wheel_cache_dir(tmp_path, ["a==1"])
    target.mkdir(parents=True)
    (target / "a-1-py3-none-any.whl").write_bytes(b"")
    (target / "requirements.txt").write_text("a==1\n")
    seen: list[str] = []

    wheels = await cached_wheels(["a==1"], tmp_path, lambda _fraction, message: seen.append(message))

    assert wheels == [target / "a-1-py3-none-any.whl"]
    assert seen == []  # nothing downloaded, nothing reported
