"""The hub's read budget per agent connection (pure: a fake clock)."""

from __future__ import annotations

import pytest

from backend.hub.pacing import ReadPacing


def test_a_burst_is_free_then_frames_are_paced_to_1000_a_second() -> None:
    now = [50.0]
    pacing = ReadPacing(clock=lambda: now[0])
    assert [pacing.spend(100) for _ in range(2000)] == [0.0] * 2000
    # Over the burst, a debt under 10 ms runs up; the 10th frame over waits for ten tokens.
    assert [pacing.spend(100) for _ in range(9)] == [0.0] * 9
    assert pacing.spend(100) == pytest.approx(0.010)
    assert pacing.spend(100) == pytest.approx(0.011)
    now[0] += 0.011  # the hub waited: eleven frames' worth came back
    assert pacing.spend(100) == 0.0
    now[0] += 10.0  # idle: the bucket refills to its burst, no more
    assert [pacing.spend(100) for _ in range(2009)] == [0.0] * 2009
    assert pacing.spend(100) == pytest.approx(0.010)


def test_bytes_are_paced_to_16_mib_a_second() -> None:
    now = [0.0]
    pacing = ReadPacing(clock=lambda: now[0])
    eight_mib = 8 << 20
    assert [pacing.spend(eight_mib) for _ in range(4)] == [0.0] * 4  # the 32 MiB burst
    assert pacing.spend(eight_mib) == pytest.approx(0.5)  # 8 MiB over at 16 MiB/s
    now[0] += 0.5
    assert pacing.spend(eight_mib) == pytest.approx(0.5)
