import itertools

import pytest

from backend.devices.exceptions import InvalidTransition
from backend.devices.states import TRANSITIONS, DeviceState, check_transition

S = DeviceState
ALLOWED = [(a, b) for a, targets in TRANSITIONS.items() for b in targets]
REFUSED = [(a, b) for a, b in itertools.product(S, S) if b not in TRANSITIONS[a] and a != b]


@pytest.mark.parametrize(("current", "target"), ALLOWED)
def test_allowed(current, target) -> None:
    check_transition(current, target)


@pytest.mark.parametrize(("current", "target"), REFUSED)
def test_refused(current, target) -> None:
    with pytest.raises(InvalidTransition):
        check_transition(current, target)


def test_design_graph() -> None:
    main_path = [S.REQUESTED, S.PROVISIONING, S.BOOTING, S.READY, S.BUSY, S.READY, S.STOPPING, S.STOPPED]
    for current, target in itertools.pairwise(main_path):
        check_transition(current, target)
    for state in S:
        if state is not S.REMOVED:
            assert S.FAILED in TRANSITIONS[state] or state is S.FAILED
    assert S.PROVISIONING in TRANSITIONS[S.FAILED]
    assert S.PROVISIONING in TRANSITIONS[S.STOPPED]
    assert TRANSITIONS[S.REMOVED] == frozenset()
    with pytest.raises(InvalidTransition):
        check_transition(S.READY, S.REQUESTED)
