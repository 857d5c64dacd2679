"""The device state machine against the design's graph, written out here by hand.

Rows are the current state, columns the target; ``y`` is an allowed edge, ``.``
a refused one (including every state to itself). The matrix is the expected
value: it is not read from ``TRANSITIONS``.
"""

import itertools

import pytest

from backend.devices.exceptions import InvalidTransition
from backend.devices.states import DeviceState, check_transition

S = DeviceState

MATRIX = """
current/target requested provisioning booting ready busy stopping stopped failed removed
requested      .         y            .       .     .    y        .       y      y
provisioning   .         .            y       .     .    y        .       y      .
booting        .         .            .       y     .    y        .       y      .
ready          .         .            .       .     y    y        .       y      .
busy           .         .            .       y     .    y        .       y      .
stopping       .         .            .       .     .    .        y       y      y
stopped        .         y            .       .     .    .        .       y      y
failed         .         y            .       .     .    y        .       .      y
removed        .         .            .       .     .    .        .       .      .
"""


HEADER, *ROWS = MATRIX.strip().splitlines()
COLUMNS = HEADER.split()[1:]


def _pairs(mark: str) -> list[tuple[str, str]]:
    pairs = []
    for line in ROWS:
        current, *cells = line.split()
        assert len(cells) == len(COLUMNS), line
        pairs += [(current, target) for target, cell in zip(COLUMNS, cells, strict=True) if cell == mark]
    return pairs


ALLOWED = _pairs("y")
REFUSED = _pairs(".")


def test_the_matrix_covers_every_pair_of_states_once() -> None:
    assert len(ALLOWED) == 25
    assert len(REFUSED) == 56
    assert sorted(ALLOWED + REFUSED) == sorted((a, b) for a in COLUMNS for b in COLUMNS)
    assert sorted(COLUMNS) == sorted(state.value for state in S)


@pytest.mark.parametrize(("current", "target"), ALLOWED)
def test_allowed(current: str, target: str) -> None:
    check_transition(S(current), S(target))


@pytest.mark.parametrize(("current", "target"), REFUSED)
def test_refused(current: str, target: str) -> None:
    with pytest.raises(InvalidTransition, match=f"device cannot go from {current} to {target}"):
        check_transition(S(current), S(target))


def test_the_main_path_and_recovery_are_walkable() -> None:
    path = ["requested", "provisioning", "booting", "ready", "busy", "ready", "stopping", "stopped"]
    path += ["provisioning", "booting", "ready", "failed", "provisioning", "failed", "removed"]
    for current, target in itertools.pairwise(path):
        check_transition(S(current), S(target))
