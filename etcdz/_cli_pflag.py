"""etcdzctl's flags read as etcdctl's Go flag package (pflag, under cobra) reads them.

Go booleans (``--flag``, ``--flag=true``, ``--flag=false``, never ``--flag false``), Go's
integer and duration parsers, no abbreviations, flags anywhere among a command's arguments, and
pflag's and cobra's error texts. Only argparse and re are imported: every call pays for this.
"""

from __future__ import annotations

import argparse
import re
from typing import Any, NoReturn


class UsageError(Exception):
    """A command line etcdctl would refuse: ``Error: <message>`` and its exit code."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


EXIT_BAD_ARGS = 128  # etcdctl's code for missing arguments
# etcdctl's words for a command whose arguments are missing, by command
MISSING_ARGUMENTS = {
    "put": "put command needs 1 argument and input from stdin or 2 arguments",
    "get": "get command needs one argument as key and an optional argument as range_end",
    "del": "del command needs one argument as key and an optional argument as range_end",
    "compaction": "compaction command needs 1 argument",
    "move-leader": "move-leader command needs 1 argument",
    "member remove": "member ID is not provided",
    "member update": "member ID is not provided",
    "member promote": "member ID is not provided",
}


# Go's parsers of flag values (pflag calls them), so that a value is accepted and refused as
# etcdctl accepts and refuses it, with Go's own error text.

_TRUE, _FALSE = ("1", "t", "T", "TRUE", "true", "True"), ("0", "f", "F", "FALSE", "false", "False")


def go_bool(text: str) -> bool:
    """strconv.ParseBool."""
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(f'strconv.ParseBool: parsing "{text}": invalid syntax')


def go_int(text: str) -> int:
    """strconv.ParseInt(text, 0, 64): decimal, or 0x/0o/0b prefixed, '_' between digits."""
    try:
        value = int(text, 0)
    except ValueError:
        raise ValueError(f'strconv.ParseInt: parsing "{text}": invalid syntax') from None
    if not -(2**63) <= value < 2**63:
        raise ValueError(f'strconv.ParseInt: parsing "{text}": value out of range')
    return value


_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_PART = re.compile(r"(\d+\.?\d*|\.\d+)([^\d.]*)")


def go_duration(text: str) -> float:
    """time.ParseDuration, in seconds: ``5s``, ``1m30s``, ``500ms``, ``-1.5h``, ``0``."""
    body = text[1:] if text[:1] in ("+", "-") else text
    sign = -1.0 if text[:1] == "-" else 1.0
    if body == "0":
        return 0.0
    if not body:
        raise ValueError(f'time: invalid duration "{text}"')
    total, at = 0.0, 0
    while at < len(body):
        part = _PART.match(body, at)
        if part is None:
            raise ValueError(f'time: invalid duration "{text}"')
        number, unit = part.groups()
        if not unit:
            raise ValueError(f'time: missing unit in duration "{text}"')
        if unit not in _UNITS:
            raise ValueError(f'time: unknown unit "{unit}" in duration "{text}"')
        total += float(number) * _UNITS[unit]
        at = part.end()
    return sign * total


class Parser(argparse.ArgumentParser):
    """argparse read as pflag reads: no abbreviations, Go booleans (``--flag``, ``--flag=true``,
    ``--flag=false``, never ``--flag false``), Go values, and pflag's errors, raised instead of
    exiting (a txn line must raise)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["allow_abbrev"] = False
        super().__init__(*args, **kwargs)

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> Any:
        # A bare boolean is given its value here, so that argparse (nargs="?") never takes the
        # next word for it: ``get --prefix foo`` is a prefix get of foo, as in Go.
        bools = {s for a in self._actions if a.type is go_bool for s in a.option_strings}
        words = list(args or ())
        end = words.index("--") if "--" in words else len(words)
        words[:end] = [f"{w}=true" if w in bools else w for w in words[:end]]
        if self._subparsers is None:  # a command's own words: flags anywhere, as pflag reads them
            words = self._flags_first(words[:end]) + words[end:]
        return super().parse_known_args(words, namespace)

    def _flags_first(self, words: list[str]) -> list[str]:
        """The flags (with their values) before the arguments: argparse fills optional arguments
        as soon as it meets the first, so ``get a --prefix=true b`` would leave ``b`` over."""
        flags: list[str] = []
        rest: list[str] = []
        i = 0
        while i < len(words):
            word = words[i]
            action = self._option_string_actions.get(word.split("=", 1)[0]) if word.startswith("-") else None
            if action is None:
                rest.append(word)
            elif "=" in word or action.nargs == 0 or i + 1 == len(words):
                flags.append(word)
            else:
                flags += [word, words[i + 1]]
                i += 1
            i += 1
        return flags + rest

    def _get_value(self, action: argparse.Action, arg_string: str) -> Any:
        if callable(action.type) and action.type in (go_bool, go_int, go_duration):
            try:
                return action.type(arg_string)
            except ValueError as exc:
                raise UsageError(
                    f'invalid argument "{arg_string}" for "{flag_name(action)}" flag: {exc}'
                ) from None
        return super()._get_value(action, arg_string)

    def error(self, message: str) -> NoReturn:
        if message.startswith("unrecognized arguments: "):
            word = message.split(": ", 1)[1].split(" ")[0]
            if word.startswith("--"):
                raise UsageError(f"unknown flag: {word.split('=')[0]}")
            if word.startswith("-") and len(word) > 1:
                raise UsageError(f"unknown shorthand flag: '{word[1]}' in {word}")
        if message.startswith(("argument command: invalid choice: ", "argument action: invalid choice: ")):
            word = message.split(": ")[2].split("'")[1]
            raise UsageError(f'unknown command "{word}" for "{self.prog}"')
        command = self.prog.partition(" ")[2]
        if message.startswith("the following arguments are required: ") and command in MISSING_ARGUMENTS:
            raise UsageError(MISSING_ARGUMENTS[command], EXIT_BAD_ARGS)
        if message in (
            "the following arguments are required: command",
            "the following arguments are required: action",
        ):
            self.print_help()  # as cobra: a command group alone shows its help
            raise SystemExit(0)
        raise UsageError(message)


def flag_name(action: argparse.Action) -> str:
    """How pflag names a flag in its errors: ``--limit``, or ``-i, --interactive``."""
    longs = [s for s in action.option_strings if s.startswith("--")]
    shorts = [s for s in action.option_strings if not s.startswith("--")]
    return f"{shorts[0]}, {longs[0]}" if shorts and longs else action.option_strings[0]


def add_bool(p: argparse.ArgumentParser, *names: str, default: bool = False, help: str | None = None) -> None:
    """A Go boolean flag: ``--flag`` alone is true, ``--flag=VALUE`` takes strconv.ParseBool."""
    p.add_argument(*names, nargs="?", const=True, default=default, type=go_bool, metavar="BOOL", help=help)
