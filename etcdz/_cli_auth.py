"""``etcdzctl user|role|auth ...``: etcdctl's auth commands, their arguments and output."""

from __future__ import annotations

import argparse
import getpass
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from etcdz import _cli_format as fmt
from etcdz import ops
from etcdz.errors import RootRoleNotExist
from proto_schemas.auth import ROOT, Permission, PermissionType, RoleGetResponse

if TYPE_CHECKING:
    from etcdz.client import Client

Out = Callable[[str], None]


# etcdctl's words when the arguments are wrong
NEEDS = {
    ("user", "add"): (1, 1, "user add command requires user name as its argument"),
    ("user", "get"): (1, 1, "user get command requires user name as its argument"),
    ("user", "delete"): (1, 1, "user delete command requires user name as its argument"),
    ("user", "passwd"): (1, 1, "user passwd command requires user name as its argument"),
    ("user", "grant-role"): (2, 2, "user grant command requires user name and role name as its argument"),
    ("user", "revoke-role"): (2, 2, "user revoke-role requires user name and role name as its argument"),
    ("role", "add"): (1, 1, "role add command requires role name as its argument"),
    ("role", "get"): (1, 1, "role get command requires role name as its argument"),
    ("role", "delete"): (1, 1, "role delete command requires role name as its argument"),
    ("role", "grant-permission"): (
        3,
        4,
        "role grant command requires role name, permission type, and key [endkey] as its argument",
    ),
    ("role", "revoke-permission"): (
        2,
        3,
        "role revoke-permission command requires role name and key [endkey] as its argument",
    ),
}


def _arguments(args: argparse.Namespace) -> list[str]:
    low, high, message = NEEDS.get((args.command, args.action), (0, 0, ""))
    given = list(getattr(args, "args", []))
    if not low <= len(given) <= high:
        raise fmt.ExitError(message, fmt.EXIT_BAD_ARGS)
    return given


def _password(name: str, interactive: bool, confirm: bool) -> str:
    """As etcdctl: prompt on the terminal (twice for a new one), or one line from stdin."""
    if not interactive:
        return sys.stdin.readline().rstrip("\n")
    password = getpass.getpass(f"Password of {name}: ")
    if confirm and getpass.getpass(f"Type password of {name} again for confirmation: ") != password:
        raise fmt.ExitError("given passwords are different", fmt.EXIT_BAD_ARGS)
    return password


def run(args: argparse.Namespace, client: Client, out: Out, mode: str) -> int:
    given = _arguments(args)
    if args.command == "auth":
        return _auth(args.action, client, out, mode)
    if args.action == "get" and (args.command == "role" or args.detail):
        _show(args.command, given[0], client, out, mode)
        return 0
    if mode == "fields" and args.command == "user" and args.action in ("get", "list"):
        raise fmt.ExitError("fields not supported as output format", 4)  # as etcdctl 3.4
    resp, lines = (_user if args.command == "user" else _role)(args, given, client)
    if mode == "fields":
        lines = fmt.fields_header(resp.header)
        if args.action == "list":
            lines.append('"Roles" :' + "".join(f" {fmt.go_quote(r)}" for r in resp.roles))
        out("\n".join(lines))
    elif mode == "json":
        out(fmt.to_json(fmt.response_json(resp)))
    else:
        for line in lines:
            out(line)
    return 0


def _auth(action: str, client: Client, out: Out, mode: str) -> int:
    if action == "enable":
        try:
            client.auth_enable()
        except RootRoleNotExist:  # etcdctl creates the root role for the root user
            if ROOT not in client.role_list().roles:
                client.role_add(ROOT)
            client.user_grant_role(ROOT, ROOT)
            client.auth_enable()
        out("Authentication Enabled")
    elif action == "disable":
        client.auth_disable()
        out("Authentication Disabled")
    else:
        st = client.auth_status()
        if mode == "json":
            status = {
                "header": fmt.header_json(st.header),
                "enabled": st.enabled,
                "authRevision": st.auth_revision,
            }
            out(fmt.to_json(status))
        else:
            out(f"Authentication Status: {str(st.enabled).lower()}\nAuthRevision: {st.auth_revision}")
    return 0


def _show(kind: str, name: str, client: Client, out: Out, mode: str) -> None:
    """``role get`` and ``user get --detail``: each role with its permissions."""
    if kind == "role":
        _print_role(name, client.role_get(name), out, mode)
        return
    roles = client.user_get(name).roles
    out(f"User: {name}")
    for role in roles:
        out("")
        _print_role(role, client.role_get(role), out, mode)


def _user(args: argparse.Namespace, given: list[str], client: Client) -> tuple[Any, list[str]]:
    action = args.action
    if action == "add":
        name, sep, password = given[0].partition(":")
        if args.new_user_password and not args.no_password:  # etcdctl 3.5: the flag wins over name:password
            name, sep, password = given[0], ":", args.new_user_password
        if not sep and not args.no_password:
            password = _password(name, args.interactive, confirm=True)
        return client.user_add(name, password, no_password=args.no_password), [f"User {name} created"]
    if action == "get":
        resp = client.user_get(given[0])
        return resp, [f"User: {given[0]}", f"Roles: {' '.join(resp.roles)}"]
    if action == "list":
        listed = client.user_list()
        return listed, list(listed.users)
    if action == "delete":
        return client.user_delete(given[0]), [f"User {given[0]} deleted"]
    if action == "passwd":
        password = _password(given[0], args.interactive, confirm=True)
        return client.user_change_password(given[0], password), ["Password updated"]
    if action == "grant-role":
        return client.user_grant_role(given[0], given[1]), [f"Role {given[1]} is granted to user {given[0]}"]
    return client.user_revoke_role(given[0], given[1]), [f"Role {given[1]} is revoked from user {given[0]}"]


def _role(args: argparse.Namespace, given: list[str], client: Client) -> tuple[Any, list[str]]:
    action = args.action
    if action == "add":
        return client.role_add(given[0]), [f"Role {given[0]} created"]
    if action == "list":
        listed = client.role_list()
        return listed, list(listed.roles)
    if action == "delete":
        return client.role_delete(given[0]), [f"Role {given[0]} deleted"]
    if action == "grant-permission":
        try:
            kind = PermissionType[given[1].upper()]
        except KeyError:
            raise fmt.ExitError(f"invalid permission type: {given[1]}", fmt.EXIT_BAD_ARGS) from None
        key, end = _interval(args, given[2], given[3] if len(given) > 3 else None)
        return client.role_grant_permission(given[0], kind, key, end or None), [f"Role {given[0]} updated"]
    key, end = _interval(args, given[1], given[2] if len(given) > 2 else None)
    resp = client.role_revoke_permission(given[0], key, end or None)
    return resp, [f"Permission of {_describe(key, end)} is revoked from role {given[0]}"]


def _interval(args: argparse.Namespace, key: str, end: str | None) -> tuple[bytes, bytes]:
    if end is not None and (args.prefix or args.from_key):
        flag = "--prefix" if args.prefix else "--from-key"
        raise fmt.ExitError(f"unexpected endkey argument with {flag}", fmt.EXIT_BAD_ARGS)
    if args.prefix and args.from_key:
        raise fmt.ExitError("--from-key and --prefix flags are mutually exclusive", fmt.EXIT_BAD_ARGS)
    return ops.key_and_end(key, end, args.prefix, args.from_key)


def _text(raw: bytes) -> str:
    return raw.decode(errors="replace")


def _describe(key: bytes, end: bytes) -> str:
    if not end:
        return f"key {_text(key)}"
    if end == b"\0":
        return f"range [{_text(key)}, <open ended>"
    return f"range [{_text(key)}, {_text(end)})"


def _print_role(name: str, resp: RoleGetResponse, out: Out, mode: str) -> None:
    if mode == "fields":
        lines = fmt.fields_header(resp.header)
        for p in resp.perm:  # Go's Println puts a second space after the literal's
            lines += [f'"PermType" :  {p.perm_type.name}', f'"Key" : {fmt.go_quote(p.key)}']
            lines.append(f'"RangeEnd" : {fmt.go_quote(p.range_end)}')
        out("\n".join(lines))
        return
    if mode == "json":
        out(fmt.to_json({"header": fmt.header_json(resp.header), "perm": [_perm_json(p) for p in resp.perm]}))
        return
    out(f"Role {name}")
    for title, kinds in (("KV Read:", (PermissionType.READ,)), ("KV Write:", (PermissionType.WRITE,))):
        out(title)
        for p in resp.perm:
            if p.perm_type in kinds or p.perm_type == PermissionType.READWRITE:
                out("\t" + _perm_line(p))


def _perm_line(p: Permission) -> str:
    if not p.range_end:
        return _text(p.key)
    line = (
        f"[{_text(p.key)}, <open ended>"
        if p.range_end == b"\0"
        else f"[{_text(p.key)}, {_text(p.range_end)})"
    )
    if ops.range_end_for(p.key, None, True, False) == p.range_end:
        line += f" (prefix {_text(p.key)})"
    return line


def _perm_json(p: Permission) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if p.perm_type:
        out["permType"] = int(p.perm_type)
    out["key"] = fmt._b64(p.key)
    if p.range_end:
        out["range_end"] = fmt._b64(p.range_end)
    return out
