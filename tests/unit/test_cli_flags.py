"""etcdzctl's grammar: a call builds only the parsers of the command it runs, and must read its
command line exactly as the whole grammar does."""

from __future__ import annotations

import pytest

from etcdz import cli
from etcdz._cli_flags import UsageError, environment_argv, go_duration, parser

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
    ["check", "datascale", "--load=s", "--auto-compact=true"],
    ["get", "k", "--prefix", "--min-mod-rev=3", "--max-create-rev", "9"],
    ["make-mirror", "--prefix=/a/", "--no-dest-prefix", "tcp://127.0.0.1:3"],
    ["--hex=true", "version"],
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


# -- Go's flag forms: pflag's booleans, strconv's and time's parsers, their errors ----------------


@pytest.mark.parametrize(
    "argv, prefix",
    [
        (["get", "k", "--prefix"], True),
        (["get", "--prefix", "k"], True),  # a bare boolean never takes the next word
        (["get", "k", "--prefix=true"], True),
        (["get", "k", "--prefix=TRUE"], True),
        (["get", "k", "--prefix=1"], True),
        (["get", "k", "--prefix=t"], True),
        (["get", "k", "--prefix=false"], False),
        (["get", "k", "--prefix=0"], False),
        (["get", "k", "--prefix=F"], False),
        (["get", "k"], False),
    ],
    ids=lambda a: " ".join(a) if isinstance(a, list) else str(a),
)
def test_go_booleans(argv: list[str], prefix: bool) -> None:
    args = parser(argv).parse_args(argv)
    assert args.prefix is prefix and args.key == "k"


def test_default_true_booleans_can_be_turned_off() -> None:
    args = parser().parse_args(["user", "add", "bob", "--interactive=false"])
    assert args.interactive is False
    assert parser().parse_args(["user", "add", "bob"]).interactive is True
    assert parser().parse_args(["--insecure-transport=false", "get", "k"]).insecure_transport is False


def test_flags_anywhere_among_the_arguments() -> None:
    args = parser().parse_args(["get", "a", "--prefix=true", "--limit", "3", "b", "-w", "json"])
    assert (args.key, args.range_end, args.prefix, args.limit, args.write_out) == ("a", "b", True, 3, "json")


@pytest.mark.parametrize(
    "text, seconds",
    [
        ("5s", 5.0),
        ("1m30s", 90.0),
        ("500ms", 0.5),
        ("1.5h", 5400.0),
        ("0", 0.0),
        ("-2s", -2.0),
        ("1h2m3s", 3723.0),
    ],
)
def test_go_durations(text: str, seconds: float) -> None:
    assert go_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "argv, error",
    [
        (
            ["get", "k", "--prefix=yes"],
            'invalid argument "yes" for "--prefix" flag: strconv.ParseBool: parsing "yes": invalid syntax',
        ),
        (
            ["get", "k", "--prefix="],
            'invalid argument "" for "--prefix" flag: strconv.ParseBool: parsing "": invalid syntax',
        ),
        (
            ["get", "k", "--limit=x"],
            'invalid argument "x" for "--limit" flag: strconv.ParseInt: parsing "x": invalid syntax',
        ),
        (
            ["--dial-timeout=5", "get", "k"],
            'invalid argument "5" for "--dial-timeout" flag: time: missing unit in duration "5"',
        ),
        (
            ["--dial-timeout=abc", "get", "k"],
            'invalid argument "abc" for "--dial-timeout" flag: time: invalid duration "abc"',
        ),
        (
            ["--dial-timeout=5x", "get", "k"],
            'invalid argument "5x" for "--dial-timeout" flag: time: unknown unit "x" in duration "5x"',
        ),
        (
            ["txn", "-i=no"],
            'invalid argument "no" for "-i, --interactive" flag: '
            'strconv.ParseBool: parsing "no": invalid syntax',
        ),
        (["get", "k", "--foo"], "unknown flag: --foo"),
        (["get", "k", "--pre"], "unknown flag: --pre"),  # no abbreviations, as pflag
        (["get", "k", "-x"], "unknown shorthand flag: 'x' in -x"),
        (["nosuch"], 'unknown command "nosuch" for "etcdzctl"'),
        (["frobnicate", "name"], 'unknown command "frobnicate" for "etcdzctl"'),
        (["member", "bogus"], 'unknown command "bogus" for "etcdzctl member"'),
    ],
)
def test_bad_flags_are_refused_in_etcdctls_words(argv: list[str], error: str) -> None:
    with pytest.raises(UsageError) as exc:
        parser().parse_args(argv)
    assert str(exc.value) == error


def test_environment_variables_stand_for_global_flags() -> None:
    env = {
        "ETCDZCTL_ENDPOINTS": "tcp://127.0.0.1:1",
        "ETCDZCTL_DIAL_TIMEOUT": "3s",
        "ETCDZCTL_HEX": "true",
        "ETCDZCTL_WRITE_OUT": "json",
        "ETCDZCTL_PREFIX": "true",  # a command's flag, not a global one: ignored
        "HOME": "/",
    }
    extra, warnings = environment_argv(env, ["--dial-timeout=1s", "get", "k"])
    assert extra == ["--endpoints=tcp://127.0.0.1:1", "--hex=true", "--write-out=json"]
    assert warnings == [
        "recognized environment variable ETCDZCTL_DIAL_TIMEOUT, but unused: shadowed by corresponding flag",
        "unrecognized environment variable ETCDZCTL_PREFIX=true",
    ]
    args = parser().parse_args([*extra, "--dial-timeout=1s", "get", "k"])
    assert (args.endpoints, args.dial_timeout, args.hex, args.write_out) == (
        "tcp://127.0.0.1:1",
        1.0,
        True,
        "json",
    )
    assert environment_argv({"ETCDZCTL_WRITE_OUT": "json"}, ["-w", "simple", "get", "k"])[0] == []


def test_cli_refuses_what_cannot_apply(capsys: pytest.CaptureFixture[str]) -> None:
    """Before any connection: an unknown format, DNS discovery, a v2 migration."""
    for argv, code, error in (
        (["-w", "yaml", "get", "k"], 4, "Error: unsupported output format"),
        (["-w", "protobuf", "lease", "list"], 4, "Error: protobuf not supported as output format"),
        (
            ["--discovery-srv=example.com", "get", "k"],
            1,
            "Error: etcdz does not discover members by DNS SRV records: give --endpoints",
        ),
        (["migrate"], 1, "Error: etcdz has no v2 store: there is nothing to migrate"),
        (["make-mirror"], 128, "Error: make-mirror takes one destination argument"),
    ):
        assert cli.main(["--endpoints", "tcp://127.0.0.1:9", "--dial-timeout=100ms", *argv]) == code
        assert capsys.readouterr().err.strip() == error


def test_version_prints_as_etcdctl(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["version"]) == 0
    first, api = capsys.readouterr().out.splitlines()
    assert first.startswith("etcdctl version: ") and api == "API version: 3.5"


def test_a_command_group_alone_prints_its_help(capsys: pytest.CaptureFixture[str]) -> None:
    """As cobra does (exit 0), instead of a usage error."""
    with pytest.raises(SystemExit) as exc:
        cli.main(["member"])
    assert exc.value.code == 0 and capsys.readouterr().out.startswith("usage: etcdzctl member")
