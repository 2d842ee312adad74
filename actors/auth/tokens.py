"""Simple tokens and login rate limits, kept by each member's gateway (fed the time).

Rules (etcd's simple token keeper):
- A token is random (chosen by the gateway that checked the password) and reaches the log only
  as its SHA-256 digest, applied by every member: any member then accepts it.
- A token lives ``ttl_s`` from its grant or its last use at this member, and dies with its
  user's password change or deletion. Tokens are not persisted: after a restart clients log in
  again (the SDK does so by itself on ``invalid auth token``).
- Failed logins are limited per user name and source address (a burst, then one per
  ``LOGIN_REFILL_S``): a name guessed at from one place is refused there at once for a while,
  without checking the password, while its owner logs in from elsewhere (a limit per name
  alone let one client lock ``root`` out). Logins are limited per source and overall, since
  each costs a deliberately slow hash on the gateway's thread; one source gets at most half of
  the overall rate, so it cannot drain it for everybody. Beyond any, ``too many requests``
  (the SDK waits and tries again).
- A gRPC client's verified TLS certificate names its user when it sends no token (etcd's
  "CommonName as user"): its door hands the gateway a certificate token, ``cert_token``, the
  user's name under an HMAC of a secret only the gateway and its doors hold (the member's door
  is in its process; a door elsewhere derives it from the members' Curve key, as the gateway
  does). It passes wherever a token does at that member (its own watch hubs' checks too) and no
  client can make one up; no member passes a client's token on to another (a follower checks a
  lease call itself before passing it to the leader's peer port).
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

LOGIN_BURST = 5
LOGIN_REFILL_S = 2.0
LOGINS_PER_S = 10  # over all names and sources: bounds the time the gateway spends hashing
LOGINS_PER_SOURCE_PER_S = LOGINS_PER_S // 2
MAX_TRACKED = 10_000  # names and sources kept; full buckets are dropped beyond it
MAX_TOKENS = 1_000_000  # a flood of logins cannot grow the table without bound


def digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


CERT_PREFIX = "etcdz-cert."  # never the start of a simple token (base64) or a JWT ("eyJ")


def cert_token(secret: bytes, user: str) -> str:
    """The token a door passes for a client whose verified certificate names ``user``."""
    mac = hmac.new(secret, user.encode(), hashlib.sha256).hexdigest()
    return f"{CERT_PREFIX}{mac}.{user}"


def cert_user(secret: bytes, token: str) -> str | None:
    """The user of a certificate token made with ``secret``; None for any other token."""
    if not secret or not token.startswith(CERT_PREFIX):
        return None
    _, sep, user = token[len(CERT_PREFIX) :].partition(".")
    if not sep or not hmac.compare_digest(cert_token(secret, user), token):
        return None
    return user


class TokenKeeper:
    def __init__(self, ttl_s: float) -> None:
        self.ttl_s = ttl_s
        self._tokens: dict[bytes, tuple[str, float]] = {}  # digest -> (user, expiry)

    def grant(self, user: str, token_digest: bytes, now: float) -> None:
        if len(self._tokens) >= MAX_TOKENS:
            self.expire(now)
        if len(self._tokens) < MAX_TOKENS:
            self._tokens[token_digest] = (user, now + self.ttl_s)

    def revoke_user(self, user: str) -> None:
        self._tokens = {d: v for d, v in self._tokens.items() if v[0] != user}

    def user(self, token: str, now: float) -> str | None:
        """The user ``token`` names (its life renewed), None if unknown or expired."""
        key = digest(token)
        held = self._tokens.get(key)
        if held is None or held[1] <= now:
            self._tokens.pop(key, None)
            return None
        self._tokens[key] = (held[0], now + self.ttl_s)
        return held[0]

    def expire(self, now: float) -> None:
        self._tokens = {d: v for d, v in self._tokens.items() if v[1] > now}

    def __len__(self) -> int:
        return len(self._tokens)


@dataclass(slots=True)
class _Bucket:
    tokens: float
    at: float


class LoginLimiter:
    def __init__(self) -> None:
        self._failures: dict[tuple[str, str], _Bucket] = {}  # (source, name) -> failures left
        self._sources: dict[str, _Bucket] = {}  # source -> logins left
        self._all = _Bucket(LOGINS_PER_S, 0.0)

    def allow(self, name: str, source: str, now: float) -> bool:
        """Whether a login for ``name`` from ``source`` may be checked now (counted if so)."""
        bucket = self._failures.get((source, name))
        if bucket is not None and _level(bucket, now, 1 / LOGIN_REFILL_S) < 1:
            return False
        rate = LOGINS_PER_SOURCE_PER_S
        if len(self._sources) > MAX_TRACKED:
            self._sources = {k: b for k, b in self._sources.items() if _level(b, now, rate) < rate}
        mine = self._sources.setdefault(source, _Bucket(rate, now))
        if _level(mine, now, rate) < 1:
            return False
        if not _take(self._all, now, LOGINS_PER_S, LOGINS_PER_S):
            return False
        return _take(mine, now, rate, rate)

    def failed(self, name: str, source: str, now: float) -> None:
        """A login for ``name`` from ``source`` failed: one fewer left in its burst."""
        refill = 1 / LOGIN_REFILL_S
        if len(self._failures) > MAX_TRACKED:  # a full bucket is the same as none
            self._failures = {k: b for k, b in self._failures.items() if _level(b, now, refill) < LOGIN_BURST}
        bucket = self._failures.setdefault((source, name), _Bucket(LOGIN_BURST, now))
        _take(bucket, now, refill, LOGIN_BURST)


def _level(b: _Bucket, now: float, rate: float) -> float:
    return b.tokens + max(0.0, now - b.at) * rate


def _take(b: _Bucket, now: float, rate: float, cap: float) -> bool:
    b.tokens, b.at = min(cap, _level(b, now, rate)), now
    if b.tokens < 1:
        return False
    b.tokens -= 1
    return True
