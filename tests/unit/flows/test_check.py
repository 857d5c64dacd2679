"""Every problem of a flow file is reported before anything runs, with its line and command."""

from __future__ import annotations

import pytest

from backend.flows import FlowError, from_sources, load, parse


def problems(text: str, env: dict[str, str] | None = None, **files: str) -> list[str]:
    sources = {"main.yaml": text, **{f"{name}.yaml": body for name, body in files.items()}}
    with pytest.raises(FlowError) as info:
        from_sources(sources, "main.yaml", env)
    return [str(problem) for problem in info.value.problems]


HEADER = "url: file:///start.html\n---\n"


@pytest.mark.parametrize(
    ("commands", "expected"),
    [
        (
            "- setLocation:\n    latitude: 1\n",
            "main.yaml:3: setLocation: `setLocation` is not supported by Corral yet",
        ),
        ("- back\n- tapOnn: Go\n", "main.yaml:4: tapOnn: unknown command (did you mean `tapOn`?)"),
        ("- frobnicate\n", "main.yaml:3: frobnicate: unknown command"),
        ("- tapOn:\n    below: Title\n", "main.yaml:4: tapOn: `below` is not supported by Corral yet"),
        (
            "- repeat:\n    times: many\n    commands: [back]\n",
            "main.yaml:3: repeat: times: Input should be a valid integer,"
            " unable to parse string as an integer (got 'many')",
        ),
        (
            "- extendedWaitUntil:\n    visible: Done\n    timeout: soon\n",
            "main.yaml:3: extendedWaitUntil: timeout: Input should be a valid integer,"
            " unable to parse string as an integer (got 'soon')",
        ),
        (
            "- tapOn:\n    text: A\n    id: b\n",
            "main.yaml:3: tapOn: say exactly one of text, id, css, xpath or point (got text, id)",
        ),
        ("- tapOn:\n    colour: red\n", "main.yaml:3: tapOn: unknown key `colour`"),
        ("- swipe:\n    start: 1,1\n", "main.yaml:3: swipe: say either start and end, or direction"),
        ("- back: 3\n", "main.yaml:3: back: expected a map of keys, found int 3"),
        ("- tapOn\n", "main.yaml:3: tapOn: needs arguments"),
        (
            "- inputText: ${NAME}\n",
            "main.yaml:3: inputText: missing variable `${NAME}`: define it in env, --env or runFlow env",
        ),
        (
            "- inputText: ${'a' + NAME}\n",
            "main.yaml:3: inputText: `${'a' + NAME}` is not supported: Corral substitutes variables"
            " but does not evaluate JavaScript in ${…};"
            " compute the value with evalScript into output.x, then use ${output.x}",
        ),
        (
            "- inputText: ${maestro.platform}\n",
            "main.yaml:3: inputText: unknown variable `${maestro.platform}`",
        ),
        ("- readQr:\n    from: viewer\n", "main.yaml:3: readQr: unknown role `viewer` (declared: device)"),
        (
            "- runFlow: other.yaml\n",
            "main.yaml:3: runFlow: cannot read `other.yaml`: not among the flow's files",
        ),
        (
            "- tapOn: A\n  inputText: b\n",
            "main.yaml:3: one command per list item, found `tapOn`, `inputText`:"
            " start each with its own `- `",
        ),
        ("- [back]\n", "main.yaml:3: expected a command, found a list"),
        ("- repeat:\n    commands: [back]\n", "main.yaml:3: repeat: say times, while, or both"),
        ("- runFlow:\n    env: {A: b}\n", "main.yaml:3: runFlow: say either file or commands"),
        (
            "- pressKey:\n    key: ''\n",
            "main.yaml:3: pressKey: key: String should have at least 1 character (got '')",
        ),
        (
            "- scrollUntilVisible:\n    element: Bottom\n    direction: SIDEWAYS\n",
            "main.yaml:3: scrollUntilVisible: direction: Input should be 'DOWN', 'UP', 'LEFT' or 'RIGHT'"
            " (got 'SIDEWAYS')",
        ),
        (
            "- scrollUntilVisible:\n    element:\n      colour: x\n",
            "main.yaml:3: scrollUntilVisible: unknown key `element.colour`",
        ),
        (
            "- extendedWaitUntil:\n    visible: [a]\n",
            "main.yaml:3: extendedWaitUntil: visible: expected a text or a map of selector keys",
        ),
        (
            "- extendedWaitUntil:\n    visible: {index: x, text: a}\n",
            "main.yaml:3: extendedWaitUntil: visible.index: Input should be a valid integer,"
            " unable to parse string as an integer (got 'x')",
        ),
        (
            "- assertVisible: [x]\n",
            "main.yaml:3: assertVisible: expected a text or a map of keys, found a list",
        ),
    ],
)
def test_one_bad_command(commands: str, expected: str) -> None:
    assert problems(HEADER + commands) == [expected]


def test_every_problem_is_reported_at_once_in_file_order() -> None:
    text = HEADER + "- tapOnn: a\n- back\n- setLocation: {}\n- inputText: ${X}\n"
    assert problems(text) == [
        "main.yaml:3: tapOnn: unknown command (did you mean `tapOn`?)",
        "main.yaml:5: setLocation: `setLocation` is not supported by Corral yet",
        "main.yaml:6: inputText: missing variable `${X}`: define it in env, --env or runFlow env",
    ]


def test_nested_commands_keep_their_own_lines() -> None:
    text = HEADER + "- repeat:\n    times: 2\n    commands:\n      - back\n      - tapOnn: x\n"
    assert problems(text) == ["main.yaml:7: tapOnn: unknown command (did you mean `tapOn`?)"]


def test_launch_app_needs_the_header_url() -> None:
    assert problems("appId: com.example\n---\n- launchApp\n") == [
        "main.yaml:3: launchApp: on browser devices it opens the header's `url`, and this flow has none"
    ]


def test_header_problems() -> None:
    text = "url: x\nonFlowStart:\n  - back\ncolour: red\n---\n- back\n"
    assert problems(text) == [
        "main.yaml:2: onFlowStart: `onFlowStart` is not supported by Corral yet",
        "main.yaml:4: header: unknown key `colour`",
    ]


def test_each_header_problem_is_on_its_keys_line() -> None:
    text = "url: x\nnmae: oops\ntags: smoke\nenv: [1, 2]\n---\n- back\n"
    assert problems(text) == [
        "main.yaml:2: header: unknown key `nmae`",
        "main.yaml:3: header: tags: Input should be a valid list (got 'smoke')",
        "main.yaml:4: header: env: Input should be a valid dictionary",
    ]


def test_a_file_without_commands() -> None:
    assert problems("url: x\n") == [
        "main.yaml: no commands: write the header, a line `---`, then the list of commands"
    ]


def test_a_list_without_header_is_a_flow() -> None:
    flow = parse("- back\n- scroll\n", "bare.yaml")
    assert (flow.name, flow.steps) == ("bare", 2)


def test_run_flow_cycle_names_the_chain() -> None:
    main = HEADER + "- runFlow: a.yaml\n"
    a = "- back\n- runFlow: b.yaml\n"
    b = "- runFlow: a.yaml\n"
    assert problems(main, a=a, b=b) == ["b.yaml:1: runFlow: runFlow cycle: a.yaml → b.yaml → a.yaml"]


def test_a_flow_that_runs_itself() -> None:
    assert problems(HEADER + "- runFlow: main.yaml\n") == [
        "main.yaml:3: runFlow: runFlow cycle: main.yaml → main.yaml"
    ]


def test_problems_inside_a_run_flow_file_name_that_file() -> None:
    assert problems(HEADER + "- runFlow: sub.yaml\n", sub="- back\n- tapOnn: x\n") == [
        "sub.yaml:2: tapOnn: unknown command (did you mean `tapOn`?)"
    ]


def test_run_flow_fan_out_is_bounded() -> None:
    # Each level runs the next ten times: 10**5 commands once inlined.
    files = {f"l{level}": "\n".join([f"- runFlow: l{level + 1}.yaml"] * 10) + "\n" for level in range(4)}
    files["l4"] = "- back\n" * 10
    found = problems(HEADER + "- runFlow: l0.yaml\n", **files)
    assert len(found) == 1
    assert found[0].endswith("more than 10000 commands, counting a runFlow file's commands each time it runs")


def test_a_variable_defined_nowhere_in_a_sub_flow() -> None:
    sub = "- inputText: ${WHO}\n"
    assert problems(HEADER + "- runFlow: sub.yaml\n", sub=sub) == [
        "sub.yaml:1: inputText: missing variable `${WHO}`: define it in env, --env or runFlow env"
    ]
    from_sources(
        {"main.yaml": HEADER + "- runFlow:\n    file: sub.yaml\n    env: {WHO: me}\n", "sub.yaml": sub},
        "main.yaml",
    )


def test_the_caller_env_satisfies_a_variable() -> None:
    flow = parse(HEADER + "- inputText: ${NAME}\n", "f.yaml", {"NAME": "x"})
    assert flow.env == {"NAME": "x"}


# -- roles ------------------------------------------------------------------

ROLES = "roles:\n  viewer: browser\n  scanner: browser\n---\n"


def test_unknown_role_block() -> None:
    assert problems(ROLES + "- viewer: [back]\n- scanner: [back]\n- printer:\n    - back\n") == [
        "main.yaml:7: printer: unknown role `printer` (declared: viewer, scanner)"
    ]


def test_commands_of_a_flow_with_roles_go_in_role_blocks() -> None:
    assert problems(ROLES + "- viewer: [back]\n- scanner: [back]\n- back\n") == [
        "main.yaml:7: back: in a flow with roles, each command goes in a role's block:"
        " `- <role>:` then its list"
    ]


def test_a_role_value_nobody_sets() -> None:
    text = ROLES + "- viewer:\n    - openLink: x\n- scanner:\n    - openLink: ${viewer.qr}\n"
    assert problems(text) == [
        "main.yaml:8: openLink: `${viewer.qr}`: no command of role viewer sets `qr`"
        " (readQr sets qr or its `as`, copyTextFrom sets copiedText, evalScript sets output.*)"
    ]


def test_read_qr_from_an_undeclared_role() -> None:
    text = ROLES + "- viewer: [back]\n- scanner:\n    - readQr:\n        from: camera\n"
    assert problems(text) == ["main.yaml:7: readQr: unknown role `camera` (declared: viewer, scanner)"]


def test_bad_role_declarations() -> None:
    text = "roles:\n  tapOn: browser\n  viewer: toaster\n---\n- viewer:\n    - back\n"
    assert problems(text) == [
        "main.yaml:1: `tapOn` cannot name a role (a word not used by commands)",
        "main.yaml:1: role `viewer`: unknown device kind `toaster` (android, browser)",
        "main.yaml:1: role `tapOn` has no commands",
    ]


def test_only_the_main_flow_declares_roles() -> None:
    sub = "roles: {x: browser}\n---\n- back\n"
    assert problems(ROLES + "- viewer:\n    - runFlow: sub.yaml\n- scanner: [back]\n", sub=sub) == [
        "sub.yaml:1: only the main flow may declare roles"
    ]


def test_sources_rebuild_the_same_flow_without_the_disk(tmp_path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "subs").mkdir()
    (tmp_path / "main.yaml").write_text("url: ${BASE}/a.html\n---\n- launchApp\n- runFlow: subs/b.yaml\n")
    (tmp_path / "subs" / "b.yaml").write_text("- runFlow: ../c.yaml\n")
    (tmp_path / "c.yaml").write_text("- back\n")
    flow = load(tmp_path / "main.yaml", {"BASE": "file:///x"})
    main = f"{tmp_path}/main.yaml"
    assert flow.main == main
    assert set(flow.sources) == {main, f"{tmp_path}/subs/b.yaml", f"{tmp_path}/c.yaml"}
    for path in list(tmp_path.rglob("*.yaml")):
        path.unlink()
    again = from_sources(flow.sources, flow.main, {"BASE": "file:///x"})
    assert (again.steps, again.sources, again.program) == (flow.steps, flow.sources, flow.program)


def test_the_header_url_takes_variables() -> None:
    assert problems("url: ${BASE}/login.html\n---\n- launchApp\n") == [
        "main.yaml:1: url: missing variable `${BASE}`: define it in env, --env or runFlow env"
    ]


def test_a_sub_flow_used_twice_reports_its_problems_once() -> None:
    sub = "colour: red\n---\n- tapOnn: x\n"
    assert problems(HEADER + "- runFlow: sub.yaml\n- runFlow: sub.yaml\n", sub=sub) == [
        "sub.yaml:1: header: unknown key `colour`",
    ]


def test_a_declared_role_without_commands() -> None:
    assert problems(ROLES + "- viewer: [back]\n") == ["main.yaml:1: role `scanner` has no commands"]


def test_javascript_with_braces_is_reported_too() -> None:
    assert problems(HEADER + "- inputText: '${ {a: 1}.a } and ${NAME'\n", {"NAME": "x"}) == [
        "main.yaml:3: inputText: `${ {a: 1}.a } and ${NAME` is not supported: Corral substitutes variables"
        " but does not evaluate JavaScript in ${…};"
        " compute the value with evalScript into output.x, then use ${output.x}",
        "main.yaml:3: inputText: `${NAME` is not supported: Corral substitutes variables"
        " but does not evaluate JavaScript in ${…};"
        " compute the value with evalScript into output.x, then use ${output.x}",
    ]
