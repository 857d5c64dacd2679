"""Reading a flow file's YAML safely, keeping the line of every mapping and list item.

:func:`read_documents` refuses before building anything what could hurt the
process: a text over :data:`MAX_BYTES`, any alias (``*name``: the "billion
laughs" bomb expands aliases; flows never need them), nesting deeper than
:data:`MAX_DEPTH`, and tags other than YAML's plain scalars, lists and maps.
The refusal comes from a first pass over libyaml's event stream, which is fast
and allocates nothing per alias, so a bomb is rejected in milliseconds.

Values come back as plain Python: :class:`Map` (a dict with the line of the
mapping and of each key) and :class:`Seq` (a list with the line of each item);
scalars are ``str``, ``int``, ``float``, ``bool`` or ``None`` (timestamps stay
the text they were written as, as Maestro reads them).
"""

from __future__ import annotations

from typing import Any

import yaml

from backend.flows.model import FlowError, FlowProblem

__all__ = ["MAX_BYTES", "MAX_DEPTH", "Map", "Seq", "read_documents"]

MAX_BYTES = 1024 * 1024
"""Largest flow file read (1 MiB); a flow is a page of commands, not data."""
MAX_DEPTH = 64
"""Deepest nesting of lists and maps (runFlow and repeat blocks nest a few levels)."""

_Loader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

_PLAIN = "tag:yaml.org,2002:"
_SCALARS = {f"{_PLAIN}{name}" for name in ("str", "int", "float", "bool", "null", "timestamp")}


_constructor = yaml.constructor.SafeConstructor()
_CONSTRUCTORS = {
    f"{_PLAIN}bool": _constructor.construct_yaml_bool,
    f"{_PLAIN}int": _constructor.construct_yaml_int,
    f"{_PLAIN}float": _constructor.construct_yaml_float,
    f"{_PLAIN}null": _constructor.construct_yaml_null,
}


class Map(dict[str, Any]):
    """A YAML mapping: ``line`` is where it starts, ``lines[key]`` where each key is."""

    line: int
    lines: dict[str, int]


class Seq(list[Any]):
    """A YAML list: ``line`` is where it starts, ``lines[i]`` where item *i* is."""

    line: int
    lines: list[int]


def read_documents(text: str, file: str) -> list[Any]:
    """Every YAML document of *text*, as plain values with lines; FlowError on any problem.

    Never raises anything but :class:`FlowError` (whose problems name *file* and the line).
    """
    try:
        size = len(text.encode("utf-8", "surrogatepass"))
    except UnicodeError:  # pragma: no cover - surrogatepass encodes every str
        size = len(text) * 4
    if size > MAX_BYTES:
        raise FlowError(
            [
                FlowProblem(
                    file,
                    None,
                    None,
                    f"the file is {size:,} bytes; flow files may be at most {MAX_BYTES:,} bytes",
                )
            ]
        )
    try:
        _prescan(text, file)
        nodes = list(yaml.compose_all(text, Loader=_Loader))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        context = exc.context
        if context and exc.context_mark is not None and exc.context_mark.line + 1 != line:
            # Found far from its cause (an unclosed quote at the end of the file): name both lines.
            context = f"{context} (line {exc.context_mark.line + 1})"
        message = " ".join(part for part in (context, exc.problem) if part) or "invalid YAML"
        raise FlowError([FlowProblem(file, line, None, f"invalid YAML: {message}")]) from None
    except (yaml.YAMLError, UnicodeError, ValueError) as exc:
        raise FlowError([FlowProblem(file, None, None, f"invalid YAML: {exc}")]) from None
    problems: list[FlowProblem] = []
    documents = [_convert(node, file, problems) for node in nodes if node is not None]
    if problems:
        raise FlowError(problems)
    return documents


def _prescan(text: str, file: str) -> None:
    depth = 0
    for event in yaml.parse(text, Loader=_Loader):
        line = event.start_mark.line + 1 if event.start_mark is not None else None
        if isinstance(event, yaml.AliasEvent):
            raise FlowError(
                [
                    FlowProblem(
                        file, line, None, f"YAML aliases (*{event.anchor}) are not allowed in flow files"
                    )
                ]
            )
        if isinstance(event, (yaml.SequenceStartEvent, yaml.MappingStartEvent)):
            depth += 1
            if depth > MAX_DEPTH:
                raise FlowError([FlowProblem(file, line, None, f"nested more than {MAX_DEPTH} levels deep")])
        elif isinstance(event, (yaml.SequenceEndEvent, yaml.MappingEndEvent)):
            depth -= 1


def _convert(node: yaml.Node, file: str, problems: list[FlowProblem]) -> Any:
    line = node.start_mark.line + 1
    if isinstance(node, yaml.ScalarNode):
        if node.tag not in _SCALARS:
            problems.append(
                FlowProblem(file, line, None, f"YAML tag {node.tag} is not allowed in flow files")
            )
            return node.value
        construct = _CONSTRUCTORS.get(node.tag)
        if construct is None:  # str, and timestamps kept as written
            return node.value
        try:
            return construct(node)
        except (yaml.YAMLError, ValueError, OverflowError):
            return node.value
    if node.tag not in (f"{_PLAIN}seq", f"{_PLAIN}map"):
        problems.append(FlowProblem(file, line, None, f"YAML tag {node.tag} is not allowed in flow files"))
        return None
    if isinstance(node, yaml.SequenceNode):
        seq = Seq(_convert(item, file, problems) for item in node.value)
        seq.line = line
        seq.lines = [item.start_mark.line + 1 for item in node.value]
        return seq
    if isinstance(node, yaml.MappingNode):
        result = Map()
        result.line = line
        result.lines = {}
        for key_node, value_node in node.value:
            key_line = key_node.start_mark.line + 1
            if not isinstance(key_node, yaml.ScalarNode):
                problems.append(FlowProblem(file, key_line, None, "a key must be a plain name"))
                continue
            key = str(key_node.value)
            if key in result:
                problems.append(FlowProblem(file, key_line, None, f"`{key}` is given twice"))
            result[key] = _convert(value_node, file, problems)
            result.lines[key] = key_line
        return result
    problems.append(FlowProblem(file, line, None, "unsupported YAML node"))  # pragma: no cover
    return None
