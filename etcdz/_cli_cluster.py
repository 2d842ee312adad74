"""``etcdzctl member ...`` and ``move-leader``: etcdctl's cluster commands and their output."""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from etcdz import _cli_format as fmt
from etcdz.errors import EtcdzError
from proto_schemas.cluster import Member, MemberListResponse

if TYPE_CHECKING:
    from etcdz.client import Client

MEMBER_COLUMNS = ["ID", "STATUS", "NAME", "PEER ADDRS", "CLIENT ADDRS", "IS LEARNER"]


def _hex_id(text: str, what: str = "bad member ID arg ({}), expecting ID in Hex") -> int:
    return fmt.parse_int(text, 16, what, unsigned=True)


def _urls(text: str) -> list[str]:
    return [u.strip() for u in text.split(",") if u.strip()]


def member_row(m: Member) -> list[str]:
    return [
        f"{m.id:x}",
        "started" if m.name else "unstarted",
        m.name,
        ",".join(m.peer_urls),
        ",".join(m.client_urls),
        str(m.is_learner).lower(),
    ]


def member_json(m: Member) -> dict[str, Any]:
    out: dict[str, Any] = {"ID": m.id}
    if m.name:
        out["name"] = m.name
    if m.peer_urls:
        out["peerURLs"] = m.peer_urls
    if m.client_urls:
        out["clientURLs"] = m.client_urls
    if m.is_learner:
        out["isLearner"] = True
    return out


def member_fields(m: Member) -> list[str]:
    """etcdctl's fields printer: one line per URL, a blank line after each member."""
    lines = [f'"ID" : {m.id}', f'"Name" : {fmt.go_quote(m.name)}']
    lines += [f'"PeerURL" : {fmt.go_quote(u)}' for u in m.peer_urls]
    lines += [f'"ClientURL" : {fmt.go_quote(u)}' for u in m.client_urls]
    return [*lines, f'"IsLearner" : {str(m.is_learner).lower()}', ""]


def _members_json(resp: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"header": fmt.header_json(resp.header)}
    if getattr(resp, "member", None) is not None:
        out["member"] = member_json(resp.member)
    out["members"] = [member_json(m) for m in resp.members]
    return out


def run_member(args: argparse.Namespace, client: Client, out: Callable[[str], None], mode: str) -> int:
    if args.action == "list":
        resp: Any = client.member_list()
        if mode == "json":
            out(fmt.to_json(_members_json(resp)))
        elif mode == "fields":
            lines = [x for m in resp.members for x in member_fields(m)]
            out("\n".join([*fmt.fields_header(resp.header), *lines]))
        elif mode == "protobuf":
            from etcdz._cli_protobuf import member_list

            sys.stdout.buffer.write(member_list(resp))
            sys.stdout.buffer.flush()
        elif mode == "table":
            out(fmt.table(MEMBER_COLUMNS, [member_row(m) for m in resp.members]))
        else:
            for m in resp.members:
                out(", ".join(member_row(m)))
        return 0
    if mode in ("fields", "protobuf"):
        raise fmt.ExitError(f"{mode} not supported as output format", 4)
    cluster = 0
    if args.action == "add":
        resp = client.member_add(
            _urls(args.peer_urls), is_learner=args.learner, auto_promote=args.auto_promote
        )
        cluster = resp.header.cluster_id
        if mode == "json":
            out(fmt.to_json(_members_json(resp)))
            return 0
        out(f"Member {resp.member.id:x} added to cluster {cluster:x}\n")
        out(_join_env(args.name, resp.member, resp.members))
        out(_start_command(args.name, resp.member, resp.members))
        return 0
    member_id = _hex_id(args.member_id)
    if args.action == "remove":
        resp = client.member_remove(member_id)
        verb = "removed from"
    elif args.action == "update":
        resp = client.member_update(member_id, _urls(args.peer_urls))
        verb = "updated in"
    else:
        resp = client.member_promote(member_id)
        verb = "promoted in"
    if mode == "json":
        out(fmt.to_json(_members_json(resp)))
    else:
        out(f"Member {member_id:x} {verb} cluster {resp.header.cluster_id:x}")
    return 0


def _initial_cluster(name: str, new: Member, members: list[Member]) -> str:
    parts = []
    for m in members:
        member_name = name if m.id == new.id else m.name
        if not member_name:
            continue
        parts += [f"{member_name}={url}" for url in m.peer_urls]
    return ",".join(parts)


def _join_env(name: str, new: Member, members: list[Member]) -> str:
    """The environment a new member starts with (etcdctl prints ETCD_*; ours are ETCDZ_*)."""
    return "\n".join(
        [
            f'ETCDZ_NAME="{name}"',
            f'ETCDZ_INITIAL_CLUSTER="{_initial_cluster(name, new, members)}"',
            f'ETCDZ_INITIAL_ADVERTISE_PEER_URLS="{",".join(new.peer_urls)}"',
            'ETCDZ_INITIAL_CLUSTER_STATE="existing"',
        ]
    )


def _start_command(name: str, new: Member, members: list[Member]) -> str:
    """The same settings as one command line (listening where it advertises: behind a NAT or
    in a container, listen on 0.0.0.0 instead), and who promotes a learner."""
    peer_urls = ",".join(new.peer_urls)
    command = " ".join(
        shlex.quote(word)
        for word in [
            "etcdz",
            f"--name={name}",
            f"--initial-advertise-peer-urls={peer_urls}",
            f"--listen-peer-urls={peer_urls}",
            f"--initial-cluster={_initial_cluster(name, new, members)}",
            "--initial-cluster-state=existing",
        ]
    )
    lines = ["", "Start the new member with (add its client URLs and data dir):", command]
    if new.is_learner:
        lines.append(
            "The leader promotes it to a voter once it has caught up."
            if new.auto_promote
            else f"Promote it once it has caught up: etcdzctl member promote {new.id:x}"
        )
    return "\n".join(lines)


def run_move_leader(
    args: argparse.Namespace, endpoints: list[str], connect: Callable[..., Client], out: Callable[[str], None]
) -> int:
    """As etcdctl: find the leader among the endpoints, ask it to hand over."""
    target = _hex_id(args.transferee_id, "{}")
    leader_endpoint, leader_id = "", 0
    for endpoint in endpoints:
        with connect([endpoint]) as c:
            try:
                st = c.status()
            except EtcdzError:
                continue
            if st.leader == st.header.member_id:
                leader_endpoint, leader_id = endpoint, st.leader
                break
    if not leader_endpoint:
        raise ValueError("no leader endpoint given at " + ",".join(endpoints))
    with connect([leader_endpoint]) as c:
        c.move_leader(target)
    out(f"Leadership transferred from {leader_id:x} to {target:x}")
    return 0


def cluster_endpoints(client: Client) -> list[str]:
    """Every member's client URLs (``--cluster``), as the member list advertises them (the
    ZeroMQ ones: a member serving etcd's gRPC API lists its gRPC URLs too)."""
    from proto_schemas.cluster import zmq_urls

    resp: MemberListResponse = client.member_list()
    return [url for m in resp.members for url in zmq_urls(m.client_urls)]
