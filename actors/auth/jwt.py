"""JWT auth tokens (etcd's ``--auth-token jwt,...``): signed, so any member holding the key
checks one alone, with nothing sent through raft and nothing kept per token.

Rules (etcd's JWT provider):
- A token names its user and the auth revision it was issued at, and expires ``ttl_s`` after
  issue (wall-clock ``exp``, as members compare it across hosts); use does not renew it.
- A token issued before the auth store last changed is refused with ``revision of auth store
  is old`` (so a revoked role or a changed password ends every older token, and the SDK logs
  in again).
- The methods are etcd's: HMAC (HS256/384/512) under a secret key file shared by the members,
  as the Curve peer key is (at least as long as the hash: RFC 7518 3.2); RSA (RS256/384/512),
  RSA-PSS (PS256/384/512) and ECDSA (ES256/384/512, on the curve the method names) under a PEM
  private key (``priv-key``) and its public key (``pub-key``, derived from the private key when
  not given, refused when it does not match). A member with only ``pub-key`` checks tokens but
  cannot issue them (etcd's verify-only mode): a login there fails as ``unavailable``, which
  sends the SDK to another member.
- Only the configured method is accepted: the token's header never chooses how it is checked
  (``none`` and every other algorithm are refused).

Signing and checking are PyJWT's, the keys are parsed by ``cryptography``; this module decides
which keys and claims are acceptable, and keeps the clock outside (``clock`` is injected). Both
libraries are imported by a member that uses JWT, when it loads its keys, not by every start
(the supervisor imports every actor's code before it forks them; they cost ~100 ms).
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from proto_schemas.errors import ErrorCode, EtcdzError

HMAC_METHODS = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}
RSA_METHODS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512")
EC_CURVES = {"ES256": "secp256r1", "ES384": "secp384r1", "ES512": "secp521r1"}
METHODS = (*HMAC_METHODS, *RSA_METHODS, *EC_CURVES)
MIN_KEY_BYTES = 32
MIN_RSA_BITS = 2048
MAX_TOKEN_BYTES = 8192  # a token longer than any we issue (RS512 with a 4096-bit key) is not worth decoding


class JwtKeyError(ValueError):
    """The key files cannot sign or check tokens (missing, open to others, too short, not a
    key of the method's kind, or a public key that is not the private key's)."""


@dataclass(frozen=True)
class JwtOptions:
    """``--auth-token jwt,priv-key=FILE,pub-key=FILE,sign-method=RS256,ttl=5m`` once parsed.
    ``key_file`` is ``priv-key`` (the HMAC secret, or a PEM private key); "" when the member
    only checks tokens with ``pub_key_file``."""

    key_file: str
    method: str = "HS256"
    ttl_s: float = 300.0
    pub_key_file: str = ""


def _read(path: str, private: bool, what: str) -> bytes:
    try:
        mode = os.stat(path).st_mode
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise JwtKeyError(f"cannot read the JWT {what} {path}: {exc.strerror}") from None
    if private and mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise JwtKeyError(f"{path} is readable by others: chmod 600 it")
    return data


def load_key(path: str, method: str = "HS256") -> bytes:
    """An HMAC signing secret: the key file's bytes, which only its owner may read, at least
    as long as the method's hash (and never under ``MIN_KEY_BYTES``)."""
    key = _read(path, True, "key")
    needed = max(MIN_KEY_BYTES, HMAC_METHODS[method]().digest_size if method in HMAC_METHODS else 0)
    if len(key) < needed:
        raise JwtKeyError(f"{path} holds {len(key)} bytes; a {method} JWT key needs at least {needed}")
    return key


def load_keys(options: JwtOptions) -> tuple[Any, Any]:
    """(signing key or None, checking key) for ``options``, checked against its method."""
    method = options.method
    if method not in METHODS:
        raise JwtKeyError(f"unknown JWT sign-method {method!r} ({', '.join(METHODS)})")
    if method in HMAC_METHODS:
        if not options.key_file:
            raise JwtKeyError(f"{method} needs priv-key=FILE (a secret shared by the members)")
        secret = load_key(options.key_file, method)
        return secret, secret
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives.serialization import load_pem_private_key, load_pem_public_key

    private: Any = None
    public: Any = None
    try:
        if options.key_file:
            private = load_pem_private_key(_read(options.key_file, True, "private key"), password=None)
        if options.pub_key_file:
            public = load_pem_public_key(_read(options.pub_key_file, False, "public key"))
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise JwtKeyError(f"cannot load the JWT keys for {method}: {exc}") from None
    if private is None and public is None:
        raise JwtKeyError(f"{method} needs priv-key=FILE and/or pub-key=FILE (PEM)")
    for key in (private, public):
        if key is not None:
            _check_kind(method, key)
    if private is not None:
        derived = private.public_key()
        if public is not None and public.public_numbers() != derived.public_numbers():
            raise JwtKeyError("the JWT public and private keys are inconsistent")
        public = derived
    return private, public


def _check_kind(method: str, key: Any) -> None:
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    if method in RSA_METHODS:
        if not isinstance(key, rsa.RSAPrivateKey | rsa.RSAPublicKey):
            raise JwtKeyError(f"{method} needs an RSA key")
        if key.key_size < MIN_RSA_BITS:
            raise JwtKeyError(
                f"{method} needs an RSA key of at least {MIN_RSA_BITS} bits, not {key.key_size}"
            )
        return
    if not isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey):
        raise JwtKeyError(f"{method} needs an ECDSA key")
    if key.curve.name != EC_CURVES[method]:
        raise JwtKeyError(f"{method} needs a key on {EC_CURVES[method]}, not {key.curve.name}")


class JwtTokens:
    def __init__(
        self,
        key: Any,
        method: str,
        ttl_s: float,
        clock: Callable[[], float],
        public: Any = None,
    ) -> None:
        """``key``: the signing key (the HMAC secret, a private key object, or None to only
        check); ``public``: the checking key of an asymmetric method (default: ``key``'s);
        ``clock``: wall-clock seconds (``exp`` is compared on other members)."""
        if method not in METHODS:
            raise JwtKeyError(f"unknown JWT sign-method {method!r} ({', '.join(METHODS)})")
        import jwt as pyjwt

        self._jwt = pyjwt
        self.method = method
        self._signing = key
        if method in HMAC_METHODS:
            self._checking = key
        else:
            self._checking = public if public is not None else key.public_key()
        self.ttl_s = ttl_s
        self._clock = clock

    @classmethod
    def from_options(cls, options: JwtOptions, clock: Callable[[], float]) -> JwtTokens:
        private, public = load_keys(options)
        return cls(private, options.method, options.ttl_s, clock, public=public)

    def issue(self, user: str, revision: int) -> str:
        if self._signing is None:  # etcd: "token signing attempted with verify-only key"
            raise EtcdzError(ErrorCode.UNAVAILABLE, "this member's JWT key only checks tokens")
        claims = {"username": user, "revision": revision, "exp": int(self._clock() + self.ttl_s)}
        return self._jwt.encode(claims, self._signing, algorithm=self.method)

    def check(self, token: str) -> tuple[str, int] | None:
        """(user, auth revision) of a token this cluster signed and that has not expired."""
        if len(token) > MAX_TOKEN_BYTES:
            return None
        try:
            claims = self._jwt.decode(
                token,
                self._checking,
                algorithms=[self.method],
                options={"verify_exp": False, "verify_iat": False, "verify_nbf": False},
            )
            user, revision, exp = claims["username"], claims["revision"], claims["exp"]
        except (self._jwt.PyJWTError, ValueError, TypeError, KeyError):
            return None
        if not (isinstance(user, str) and type(revision) is int and type(exp) is int):
            return None
        if exp <= self._clock():  # the clock is the shell's: a core reads none
            return None
        return user, revision
