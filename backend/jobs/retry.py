"""Retry delays: exponential backoff with full jitter (pure)."""

from __future__ import annotations

import random

__all__ = ["backoff_delay"]

_RNG = random.Random()


def backoff_delay(
    attempt: int, *, base: float = 1.0, cap: float = 60.0, rng: random.Random | None = None
) -> float:
    """Seconds to wait before attempt ``attempt + 1`` (``attempt`` counts from 1).

    Half the exponential step is fixed and half random, so retries spread out
    without ever retrying immediately.
    """
    step: float = min(cap, base * 2.0 ** (attempt - 1))
    return step / 2 + (rng or _RNG).uniform(0, step / 2)
