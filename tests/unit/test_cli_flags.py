"""etcdzctl's grammar: a call builds only the parsers of the command it runs, and must read its
command line exactly as the whole grammar does."""

from __future__ import annotations

import pytest

from etcdz import cli
from etcdz._cli_flags import UsageError, parser

LINES = [
    ["put", "k", "v", "--prev-kv"],
    ["--endpoints", "tcp://127.0.0.1:1", "get", "k", "--prefix", "-w", "json"],
    ["del", "k", "--from-key"],
    ["txn", "-i"],
    ["endpoint", "status", "--cluster"],
    ["member", "add", "m4", "--peer-urls", "tcp://127.0.0.1:2"],
    ["move-leader", "abc"],
    ["lease", "grant", "10"],
    ["watch", "k", "--rev", "3"],
    ["snapshot", "restore", "f.db", "--name", "m1"],
    ["user", "add", "alice:x", "--interactive=false"],
    ["role", "grant-permission", "r", "read", "k"],
    ["check", "perf", "--load", "s"],
    ["--user", "lease", "put", "k", "v"],  # a flag's value that is a command name
]


@pytest.mark.parametrize("argv", LINES, ids=lambda a: " ".join(a))
def test_a_call_parses_as_the_whole_grammar_would(argv: list[str]) -> None:
    try:
        narrow = parser(argv).parse_args(argv)
    except UsageError:
        narrow = parser().parse_args(argv)  # what cli.main does then
    assert narrow == parser().parse_args(argv)


def test_only_the_commands_group_is_built() -> None:
    sub = next(a for a in parser(["get", "k"])._actions if a.dest == "command")
    assert set(sub.choices) == {"put", "get", "del"}  # type: ignore[arg-type]
    whole = next(a for a in parser()._actions if a.dest == "command")
    assert {"get", "member", "lease", "watch", "user", "check", "snapshot"} <= set(whole.choices)  # type: ignore[arg-type]


def test_help_before_a_command_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["--help", "get"])
    out = capsys.readouterr().out
    assert "member" in out and "snapshot" in out and "get" in out
