"""CurveZMQ on etcdz's network sockets: encryption and, where asked, client authentication
(what TLS and client certificates are to etcd).

Keys are ZeroMQ certificate files (``etcdz keygen``): ``NAME.key`` holds a public key,
``NAME.key_secret`` the pair. A server socket takes a pair; a client socket takes the server's
public key and a pair of its own (one made up on the spot when it has none). Who may connect
is decided by a ZAP handler: with ``allowed`` None any key may (encryption only), else only
the public keys in ``allowed`` -- which the shells fill from a trusted-keys directory plus the
server's own key (the node's own processes connect with it).

The ZAP handler is a ROUTER in the process's context, served by its event loop like any
other socket; ``zap_reply`` is the pure decision.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import stat
from dataclasses import dataclass

import zmq
import zmq.auth
from zmq.utils import z85

from actors.runtime.loop import Loop

ZAP_ENDPOINT = "inproc://zeromq.zap.01"
ZAP_VERSION = b"1.0"


class KeyFileError(ValueError):
    """A key file that is missing, unreadable, or not a certificate."""


@dataclass(frozen=True, slots=True)
class KeyPair:
    public: bytes
    secret: bytes


@dataclass(frozen=True, slots=True)
class Curve:
    """One side's settings: ``pair`` it serves or connects with, ``server`` the public key
    of the servers it connects to, ``allowed`` the client keys it accepts (None: any)."""

    pair: KeyPair
    server: bytes
    allowed: frozenset[bytes] | None = None


def load_pair(path: str) -> KeyPair:
    """The key pair in a ``.key_secret`` certificate (refused if others can read it)."""
    try:
        mode = os.stat(path).st_mode
        public, secret = zmq.auth.load_certificate(path)
    except (OSError, ValueError) as exc:
        raise KeyFileError(f"cannot read key file {path}: {exc}") from None
    if secret is None:
        raise KeyFileError(f"{path} holds no secret key (give the .key_secret file)")
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeyFileError(f"{path} is readable by others: chmod 600 it")
    return KeyPair(public, secret)


def load_trusted(directory: str) -> frozenset[bytes]:
    """Every public key in ``directory``'s ``*.key`` files."""
    try:
        return frozenset(zmq.auth.load_certificates(directory))
    except (OSError, ValueError) as exc:
        raise KeyFileError(f"cannot read trusted keys in {directory}: {exc}") from None


def for_node(key_file: str, cert_auth: bool, trusted_dir: str) -> Curve | None:
    """A member's settings for one kind of endpoint (clients or peers), None without a key."""
    if not key_file:
        return None
    pair = load_pair(key_file)
    allowed = None
    if cert_auth:
        allowed = frozenset({pair.public}) | (load_trusted(trusted_dir) if trusted_dir else frozenset())
    return Curve(pair=pair, server=pair.public, allowed=allowed)


def hub_token(client: Curve | None) -> str:
    """What a watch hub holding the members' client key pair presents to a member's gateway
    to announce itself and read history: derived from that pair's secret, so clients (who
    hold only the public key, or keys of their own) cannot make it up. Empty without a key."""
    if client is None:
        return ""
    return hmac.new(client.pair.secret, b"etcdz hub token", hashlib.sha256).hexdigest()


def door_secret(client: Curve | None) -> bytes:
    """The secret under which a gRPC door vouches for a client certificate's user (see
    actors/auth/tokens.py): derived from the members' client key pair, so every member and a
    standalone door holding that pair share it; empty without a key (a member then makes up
    one for its own door)."""
    if client is None:
        return b""
    return hmac.new(client.pair.secret, b"etcdz certificate users", hashlib.sha256).digest()


def serve(sock: zmq.Socket[bytes], curve: Curve | None, domain: str) -> None:
    """Make ``sock`` a Curve server (before it binds)."""
    if curve is None:
        return
    sock.curve_secretkey = curve.pair.secret
    sock.curve_publickey = curve.pair.public
    sock.curve_server = True
    sock.zap_domain = domain.encode()


def connect_as(sock: zmq.Socket[bytes], curve: Curve | None) -> None:
    """Make ``sock`` a Curve client of ``curve.server`` (before it connects)."""
    if curve is None:
        return
    sock.curve_serverkey = curve.server
    sock.curve_publickey = curve.pair.public
    sock.curve_secretkey = curve.pair.secret


def guard(loop: Loop, curve: Curve | None) -> None:
    """Serve ZAP in ``loop``'s context when ``curve`` restricts its clients (call before the
    server socket binds, or early connections skip the check)."""
    if curve is None or curve.allowed is None:
        return
    handler = loop.ctx.socket(zmq.ROUTER)
    handler.setsockopt(zmq.LINGER, 0)
    handler.bind(ZAP_ENDPOINT)
    allowed = curve.allowed

    def answer(batch: list[list[bytes]]) -> None:
        for frames in batch:
            handler.send_multipart(zap_reply(frames, allowed))

    loop.on_frames(handler, answer)


def zap_reply(frames: list[bytes], allowed: frozenset[bytes] | None) -> list[bytes]:
    """The ZAP answer (RFC 27) to one request ``[route, b"", version, request_id, domain,
    address, identity, mechanism, *credentials]``."""
    route, request = frames[:2], frames[2:]
    if len(request) < 6 or request[0] != ZAP_VERSION:
        return [
            *route,
            ZAP_VERSION,
            request[1] if len(request) > 1 else b"",
            b"400",
            b"bad ZAP request",
            b"",
            b"",
        ]
    request_id, mechanism, credentials = request[1], request[5], request[6:]
    if mechanism != b"CURVE" or len(credentials) != 1:
        return [*route, ZAP_VERSION, request_id, b"400", b"CURVE required", b"", b""]
    if len(credentials[0]) != 32:
        return [*route, ZAP_VERSION, request_id, b"400", b"bad key", b"", b""]
    key = z85.encode(credentials[0])
    if allowed is not None and key not in allowed:
        return [*route, ZAP_VERSION, request_id, b"400", b"key not allowed", b"", b""]
    return [*route, ZAP_VERSION, request_id, b"200", b"OK", key, b""]
