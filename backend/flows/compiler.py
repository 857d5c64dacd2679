"""From a flow file's text to a :class:`Flow`: every problem found at once, with its line.

The compiler reads the main file and every ``runFlow`` file through a *read*
function (the disk for ``load``, a dict for ``from_sources``), checks each
command as far as it can before the run (name, keys, types, variables, roles,
the device kind's commands, ``runFlow`` cycles) and builds the
:class:`~backend.flows.program.Program`. Values only known at run time
(``${output.x}``, ``${maestro.copiedText}``, ``${<role>.<name>}``) are checked by
name here and by type when the step runs.

Scopes: a flow's variables are its header ``env`` overridden by the caller's
env. A ``runFlow`` file sees its own header ``env`` as defaults, overridden by
the calling flow's variables, overridden by the ``runFlow``'s ``env``; the
sub-flow's variables end with it.
"""

from __future__ import annotations

import difflib
import posixpath
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

from pydantic import ValidationError

from agent.commands import COMMANDS, commands_for
from backend.flows import syntax
from backend.flows.mapping import AGENT_NAMES, Context, agent_commands
from backend.flows.model import DEFAULT_ROLE, Flow, FlowError, FlowProblem
from backend.flows.program import Block, Leaf, Node, Program
from backend.flows.variables import classify, malformed, references, render, substitute_all, texts
from backend.flows.yamlsafe import Map, Seq, read_documents

__all__ = ["DEVICE_KINDS", "MAX_RUNFLOW_DEPTH", "MAX_STEPS", "Reader", "compile_flow"]

Reader = Callable[[str], str]
"""Returns the text of a flow file by key; raises FlowError (one problem) when it cannot."""

DEVICE_KINDS = frozenset(kind for model in COMMANDS.values() for kind in model.kinds)
MAX_RUNFLOW_DEPTH = 16
MAX_STEPS = 10_000
"""Commands a flow may expand to once every runFlow is inlined (a guard against runFlow fan-out bombs)."""
_ROLE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,31}$")
_RESERVED = frozenset({"output", "maestro", "env"})
_UNSUPPORTED_JS = (
    "Corral substitutes variables but does not evaluate JavaScript in ${…}; "
    "compute the value with evalScript into output.x, then use ${output.x}"
)


@dataclass
class _Scope:
    """Variables known while compiling: name -> value, or None when only known at run time."""

    values: dict[str, str | None]


@dataclass
class _Compiler:
    """One check of one flow: collects problems instead of stopping at the first."""

    read: Reader
    roles: dict[str, str] = field(default_factory=dict)
    problems: list[FlowProblem] = field(default_factory=list)
    sources: dict[str, str] = field(default_factory=dict)
    produced: dict[str, set[str]] = field(default_factory=dict)
    """Role -> names its commands capture (``qr``, ``copiedText``, ``output.*``)."""
    wanted: list[tuple[str, str, str, int | None, str]] = field(default_factory=list)
    """(role, name, file, line, command) of every ``${<role>.<name>}``."""
    count: int = 0
    parsed: dict[str, tuple[Map, Seq] | None] = field(default_factory=dict)

    def problem(self, file: str, line: int | None, command: str | None, message: str) -> None:
        self.problems.append(FlowProblem(file, line, command, message))

    # -- files --------------------------------------------------------------

    def documents(self, key: str, line: int | None = None, via: str | None = None) -> tuple[Map, Seq] | None:
        """The header and the command list of file *key*, or None (problems recorded, once per file)."""
        if key not in self.parsed:
            self.parsed[key] = self.read_documents(key, line, via)
        return self.parsed[key]

    def read_documents(self, key: str, line: int | None, via: str | None) -> tuple[Map, Seq] | None:
        try:
            text = self.sources[key] if key in self.sources else self.read(key)
        except FlowError as exc:
            if via is None:
                self.problems.extend(exc.problems)
            else:
                for problem in exc.problems:
                    self.problem(via, line, "runFlow", f"cannot read `{key}`: {problem.message}")
            return None
        self.sources[key] = text
        try:
            docs = read_documents(text, key)
        except FlowError as exc:
            self.problems.extend(exc.problems)
            return None
        header, commands = Map(), Seq()
        header.line, header.lines, commands.line, commands.lines = 1, {}, 1, []
        shapes = [type(doc) for doc in docs]
        if shapes == [Map, Seq]:
            header, commands = docs
        elif shapes == [Seq]:
            (commands,) = docs
        elif shapes == [Map]:
            (header,) = docs
            self.problem(
                key, None, None, "no commands: write the header, a line `---`, then the list of commands"
            )
        else:
            self.problem(key, None, None, "expected a header (keys), a line `---`, then a list of commands")
            return None
        return header, commands

    def header(self, key: str, raw: Map) -> syntax.Header | None:
        for name in raw:
            if name in syntax.UNSUPPORTED_HEADER_KEYS:
                self.problem(key, raw.lines.get(name), name, f"`{name}` is not supported by Corral yet")
        clean = {name: value for name, value in raw.items() if name not in syntax.UNSUPPORTED_HEADER_KEYS}
        try:
            return syntax.Header.model_validate(clean)
        except ValidationError as exc:
            # One problem per key, on its own line: the header spans several.
            names = dict.fromkeys(str(error["loc"][0]) for error in exc.errors() if error["loc"])
            for name in sorted(names, key=lambda name: raw.lines.get(name, raw.line)):
                line = raw.lines.get(name, raw.line)
                self.problem(key, line, None, f"header: {syntax.readable(exc, name)}")
            if not names:
                self.problem(key, raw.line, None, f"header: {syntax.readable(exc)}")
            return None

    # -- command lists ------------------------------------------------------

    def commands(
        self,
        items: Any,
        file: str,
        scope: _Scope,
        role: str,
        url: str | None,
        stack: tuple[str, ...],
        line: int,
    ) -> tuple[Node, ...]:
        if not isinstance(items, Seq):
            self.problem(file, line, None, "expected a list of commands (`- command`)")
            return ()
        nodes = []
        for item, item_line in zip(items, items.lines, strict=True):
            node = self.command(item, file, item_line, scope, role, url, stack)
            if node is not None:
                nodes.append(node)
        return tuple(nodes)

    def command(
        self,
        item: Any,
        file: str,
        line: int,
        scope: _Scope,
        role: str,
        url: str | None,
        stack: tuple[str, ...],
    ) -> Node | None:
        self.count += 1
        if self.count == MAX_STEPS + 1:
            self.problem(
                file,
                line,
                None,
                f"more than {MAX_STEPS} commands, counting a runFlow file's commands each time it runs",
            )
        if self.count > MAX_STEPS:
            return None
        name, value = self.split(item, file, line)
        if name is None:
            return None
        spec = syntax.SPECS.get(name)
        if spec is None:
            if name in syntax.UNSUPPORTED_COMMANDS:
                self.problem(file, line, name, f"`{name}` is not supported by Corral yet")
            elif name in self.roles:
                self.problem(
                    file, line, name, "a role block goes at the top level of the flow, not inside commands"
                )
            else:
                close = difflib.get_close_matches(name, list(syntax.SPECS), n=1)
                hint = f" (did you mean `{close[0]}`?)" if close else ""
                self.problem(file, line, name, f"unknown command{hint}")
            return None
        raw = self.arguments(spec, value, file, line)
        if raw is None:
            return None
        body_raw = raw.pop("commands", None) if spec.name in ("runFlow", "repeat") else None
        if not self.check_variables(spec.name, raw, file, line, scope, role):
            return None
        with_body = raw if body_raw is None else {**raw, "commands": []}
        args = self.validate(spec, with_body, file, line, scope, url, role)
        if spec.name == "runFlow":
            return self.run_flow(spec, raw, body_raw, args, file, line, scope, role, url, stack)
        if spec.name == "repeat":
            if body_raw is None:
                return None  # validation reported it
            body = self.commands(body_raw, file, scope, role, url, stack, line)
            return Block(spec, raw, file, line, body)
        self.note_capture(spec.name, raw, role)
        return Leaf(spec, raw, file, line, url)

    def split(self, item: Any, file: str, line: int) -> tuple[str | None, Any]:
        if isinstance(item, str):
            return item, None
        if isinstance(item, Map) and len(item) == 1:
            ((name, value),) = item.items()
            return name, value
        if isinstance(item, Map) and item:
            names = ", ".join(f"`{name}`" for name in item)
            self.problem(
                file, line, None, f"one command per list item, found {names}: start each with its own `- `"
            )
        else:
            self.problem(file, line, None, f"expected a command, found {_kind_of(item)}")
        return None, None

    def arguments(self, spec: syntax.Spec, value: Any, file: str, line: int) -> dict[str, Any] | None:
        if value is None:
            if spec.bare:
                return {}
            self.problem(file, line, spec.name, "needs arguments")
            return None
        if isinstance(value, Map):
            raw = dict(value)
            fields = {info.alias or name for name, info in spec.model.model_fields.items()}
            unsupported = [key for key in raw if key in syntax.UNSUPPORTED_KEYS and key not in fields]
            for nested in ("element", "visible", "notVisible"):
                if isinstance(raw.get(nested), Map):
                    unsupported += [key for key in raw[nested] if key in syntax.UNSUPPORTED_KEYS]
            for condition in ("when", "while"):
                if isinstance(raw.get(condition), Map):
                    for nested in ("visible", "notVisible"):
                        if isinstance(raw[condition].get(nested), Map):
                            unsupported += [k for k in raw[condition][nested] if k in syntax.UNSUPPORTED_KEYS]
            for key in dict.fromkeys(unsupported):
                self.problem(
                    file, value.lines.get(key, line), spec.name, f"`{key}` is not supported by Corral yet"
                )
            return None if unsupported else raw
        if isinstance(value, (str, int, float, bool)) and spec.shorthand is not None:
            return {spec.shorthand: value}
        self.problem(file, line, spec.name, f"expected {_expected(spec)}, found {_kind_of(value)}")
        return None

    def check_variables(
        self, command: str, raw: Mapping[str, Any], file: str, line: int | None, scope: _Scope, role: str
    ) -> bool:
        ok = True
        for text in texts(raw, command):
            for snippet in malformed(text):
                self.problem(file, line, command, f"`{snippet}` is not supported: {_UNSUPPORTED_JS}")
                ok = False
            for inner in references(text):
                ref = classify(inner, self.roles)
                if ref.kind == "unsupported":
                    self.problem(file, line, command, f"`${{{inner}}}` is not supported: {_UNSUPPORTED_JS}")
                    ok = False
                elif ref.kind == "unknown":
                    self.problem(file, line, command, f"unknown variable `${{{inner}}}`")
                    ok = False
                elif ref.kind == "env" and ref.name not in scope.values:
                    self.problem(
                        file,
                        line,
                        command,
                        f"missing variable `${{{inner}}}`: define it in env, --env or runFlow env",
                    )
                    ok = False
                elif ref.kind == "role" and ref.role is not None:
                    self.wanted.append((ref.role, ref.name, file, line, command))
        return ok

    def validate(
        self,
        spec: syntax.Spec,
        raw: dict[str, Any],
        file: str,
        line: int,
        scope: _Scope,
        url: str | None,
        role: str,
    ) -> syntax.Args | None:
        """Check the arguments as far as the values known now allow; the model, or None."""
        known, resolved = _static(raw, scope, spec.name)
        url_known, static_url = (True, None) if url is None else _static_text(url, scope)
        try:
            args = spec.model.model_validate(resolved)
        except ValidationError as exc:
            if known:
                self.problem(file, line, spec.name, syntax.readable(exc))
            return None
        if isinstance(args, syntax.ReadQr) and args.from_ is not None and args.from_ not in self.roles:
            self.problem(file, line, spec.name, f"unknown role `{args.from_}` ({_declared(self.roles)})")
        kind = self.roles.get(role, "browser")
        missing = [name for name in AGENT_NAMES.get(spec.name, ()) if name not in commands_for(kind)]
        if missing and kind in DEVICE_KINDS:
            self.problem(file, line, spec.name, f"{kind} devices cannot run `{spec.name}`")
        if known and url_known and spec.name not in ("runFlow", "repeat", "pasteText", "evalScript"):
            try:
                agent_commands(spec.name, args, Context(url=static_url))
            except (ValidationError, ValueError) as exc:
                message = syntax.readable(exc) if isinstance(exc, ValidationError) else str(exc)
                self.problem(file, line, spec.name, message)
        return args

    def note_capture(self, command: str, raw: Mapping[str, Any], role: str) -> None:
        names = self.produced.setdefault(role, set())
        if command == "readQr":
            alias = raw.get("as")
            names.add(alias if isinstance(alias, str) else "qr")
        elif command == "copyTextFrom":
            names.add("copiedText")
        elif command == "evalScript":
            names.add("output.*")

    # -- runFlow ------------------------------------------------------------

    def run_flow(
        self,
        spec: syntax.Spec,
        raw: dict[str, Any],
        body_raw: Any,
        args: syntax.Args | None,
        file: str,
        line: int,
        scope: _Scope,
        role: str,
        url: str | None,
        stack: tuple[str, ...],
    ) -> Block | None:
        if not isinstance(args, syntax.RunFlow):
            return None
        child = _Scope(dict(scope.values))
        for name, value in (args.env or {}).items():
            known, text = _static_text(render(value) if value is not None else "", scope)
            child.values[name] = text if known else None
        if body_raw is not None:
            body = self.commands(body_raw, file, child, role, url, stack, line)
            return Block(spec, raw, file, line, body)
        assert args.file is not None  # the model says file or commands
        known, written = _static_text(args.file, scope)
        if not known:
            self.problem(
                file, line, spec.name, "the runFlow file must be known before the run (no run-time variables)"
            )
            return None
        target = posixpath.normpath(posixpath.join(posixpath.dirname(file), written))
        if target in stack:
            chain = " → ".join(PurePosixPath(key).name for key in (*stack[stack.index(target) :], target))
            self.problem(file, line, spec.name, f"runFlow cycle: {chain}")
            return None
        if len(stack) > MAX_RUNFLOW_DEPTH:
            self.problem(file, line, spec.name, f"runFlow nested more than {MAX_RUNFLOW_DEPTH} deep")
            return None
        documents = self.documents(target, line, via=file)
        if documents is None:
            return None
        header_raw, commands = documents
        header = self.header(target, header_raw)
        if header is None:
            return None
        if header.roles:
            self.problem(target, header_raw.lines.get("roles"), None, "only the main flow may declare roles")
        defaults = {name: render(value) if value is not None else "" for name, value in header.env.items()}
        sub = _Scope({**defaults, **child.values})
        if header.url is not None:
            self.check_variables("url", {"url": header.url}, target, header_raw.lines.get("url"), sub, role)
        body = self.commands(commands, target, sub, role, header.url or url, (*stack, target), commands.line)
        return Block(spec, raw, file, line, body, defaults, target)

    # -- the main file ------------------------------------------------------

    def flow(self, main: str, env: Mapping[str, str]) -> Flow:
        documents = self.documents(main)
        if documents is None:
            raise FlowError(self.problems)
        header_raw, commands = documents
        header = self.header(main, header_raw)
        if header is None:
            raise FlowError(self.problems)
        self.roles = self.declared_roles(main, header, header_raw)
        variables = {name: render(value) if value is not None else "" for name, value in header.env.items()}
        variables.update(env)
        scope = _Scope(dict[str, str | None](variables))
        if header.url is not None:
            self.check_variables(
                "url", {"url": header.url}, main, header_raw.lines.get("url"), scope, DEFAULT_ROLE
            )
        lanes: dict[str, list[Node]] = {role: [] for role in self.roles}
        if header.roles is None:
            lanes[DEFAULT_ROLE] = list(
                self.commands(commands, main, scope, DEFAULT_ROLE, header.url, (main,), 1)
            )
        else:
            self.role_blocks(commands, main, scope, header.url, lanes)
            for role in [role for role, nodes in lanes.items() if not nodes]:
                self.problem(main, header_raw.lines.get("roles"), None, f"role `{role}` has no commands")
        self.check_wanted()
        if self.problems:
            # A runFlow file used twice is checked twice: report each problem once.
            raise FlowError(sorted(dict.fromkeys(self.problems), key=_order(list(self.sources))))
        return Flow(
            name=header.name or PurePosixPath(main).stem,
            path=None,
            roles=dict(self.roles),
            env=variables,
            tags=tuple(header.tags),
            steps=sum(len(nodes) for nodes in lanes.values()),
            sources=dict(self.sources),
            main=main,
            program=Program({role: tuple(nodes) for role, nodes in lanes.items()}, variables),
        )

    def declared_roles(self, main: str, header: syntax.Header, raw: Map) -> dict[str, str]:
        if header.roles is None:
            return {DEFAULT_ROLE: "browser"}
        line = raw.lines.get("roles")
        if not header.roles:
            self.problem(main, line, None, "roles: declare at least one role, e.g. {viewer: browser}")
        for name, kind in header.roles.items():
            if not _ROLE_NAME.match(name) or name in _RESERVED or name in syntax.SPECS:
                self.problem(main, line, None, f"`{name}` cannot name a role (a word not used by commands)")
            if kind not in DEVICE_KINDS:
                self.problem(
                    main,
                    line,
                    None,
                    f"role `{name}`: unknown device kind `{kind}` ({', '.join(sorted(DEVICE_KINDS))})",
                )
        return dict(header.roles)

    def role_blocks(
        self, commands: Seq, main: str, scope: _Scope, url: str | None, lanes: dict[str, list[Node]]
    ) -> None:
        for item, line in zip(commands, commands.lines, strict=True):
            if isinstance(item, Map) and len(item) == 1:
                ((name, body),) = item.items()
                if name in self.roles:
                    lanes[name].extend(self.commands(body, main, scope, name, url, (main,), line))
                    continue
                if name not in syntax.SPECS and name not in syntax.UNSUPPORTED_COMMANDS:
                    self.problem(main, line, name, f"unknown role `{name}` ({_declared(self.roles)})")
                    continue
            shown = (
                item if isinstance(item, str) else next(iter(item), None) if isinstance(item, Map) else None
            )
            self.problem(
                main,
                line,
                shown if isinstance(shown, str) else None,
                "in a flow with roles, each command goes in a role's block: `- <role>:` then its list",
            )

    def check_wanted(self) -> None:
        for role, name, file, line, command in self.wanted:
            names = self.produced.get(role, set())
            if name in names or (name.startswith("output.") and "output.*" in names):
                continue
            self.problem(
                file,
                line,
                command,
                f"`${{{role}.{name}}}`: no command of role {role} sets `{name}`"
                " (readQr sets qr or its `as`, copyTextFrom sets copiedText, evalScript sets output.*)",
            )


def compile_flow(read: Reader, main: str, env: Mapping[str, str]) -> Flow:
    """The flow whose main file is *main*; FlowError listing every problem (file order)."""
    return _Compiler(read).flow(main, env)


def _static(raw: Mapping[str, Any], scope: _Scope, command: str) -> tuple[bool, dict[str, Any]]:
    """*raw* with the variables known now substituted; whether nothing was left for run time."""
    known = True

    def value_of(inner: str) -> str:
        nonlocal known
        value = scope.values.get(inner)
        if value is None:
            known = False
            return "${" + inner + "}"
        return value

    resolved = substitute_all(raw, command, value_of)
    return known, resolved


def _static_text(text: str, scope: _Scope) -> tuple[bool, str]:
    known, resolved = _static({"text": text}, scope, "")
    return known, str(resolved["text"])


def _kind_of(value: Any) -> str:
    if isinstance(value, Seq):
        return "a list"
    if isinstance(value, Map):
        return "a map" if value else "an empty map"
    if value is None:
        return "nothing"
    return f"{type(value).__name__} {value!r}"


def _expected(spec: syntax.Spec) -> str:
    if spec.shorthand is None:
        return "a map of keys"
    return f"a {spec.shorthand} or a map of keys"


def _declared(roles: Mapping[str, str]) -> str:
    return "declared: " + ", ".join(roles) if roles else "no roles declared"


def _order(files: list[str]) -> Callable[[FlowProblem], tuple[int, int]]:
    def key(problem: FlowProblem) -> tuple[int, int]:
        position = files.index(problem.file) if problem.file in files else len(files)
        return position, problem.line or 0

    return key
