"""evalScript sends a device only the variables its script names."""

from __future__ import annotations

from backend.flows.mapping import variables_named_in

ENV = {"USERNAME": "ann", "PASSWORD": "hunter2", "my-var": "x", "USER": "u"}


def test_only_the_named_variables_reach_the_device() -> None:
    assert variables_named_in("output.greeting = 'hi ' + USERNAME", ENV) == {"USERNAME": "ann"}
    assert variables_named_in("output.x = env['my-var']", ENV) == {"my-var": "x"}
    assert variables_named_in("output.x = env.USER + 1", ENV) == {"USER": "u"}
    assert variables_named_in("output.x = 42", ENV) == {}


def test_a_name_inside_another_word_is_not_named() -> None:
    assert variables_named_in("output.USERNAMES = 1", ENV) == {}
