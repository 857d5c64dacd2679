"""LISTEN/NOTIFY channel names, built in one place with a version suffix."""

from __future__ import annotations

from typing import Literal

__all__ = ["channel"]

_VERSION = "v1"


def channel(topic: Literal["jobs", "devices"]) -> str:
    """Name of the channel on which changes of *topic* are announced."""
    return f"corral_{topic}_{_VERSION}"
