"""Signed auth tokens: what a member accepts, and every way a token can be wrong, for each of
etcd's methods (HMAC, RSA, RSA-PSS, ECDSA), and which key files make a member start."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from actors.auth.jwt import MIN_KEY_BYTES, JwtKeyError, JwtOptions, JwtTokens, load_key, load_keys
from proto_schemas.errors import ErrorCode, EtcdzError

KEY = b"k" * 64  # long enough for every HMAC method (RFC 7518 3.2)


class Clock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def forge(header: dict[str, object], claims: dict[str, object], key: bytes = KEY) -> str:
    """A token signed with ``key`` over any header and claims (HS256)."""
    signed = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    return f"{signed}.{b64(hmac.new(key, signed.encode(), hashlib.sha256).digest())}"


def test_a_token_names_its_user_and_revision_until_it_expires_whatever_its_use() -> None:
    clock = Clock()
    tokens = JwtTokens(KEY, "HS256", 300, clock)
    token = tokens.issue("alice", 7)
    assert tokens.check(token) == ("alice", 7)
    clock.now += 299
    assert tokens.check(token) == ("alice", 7)  # used, and not renewed by use:
    clock.now += 1
    assert tokens.check(token) is None
    other_member = JwtTokens(KEY, "HS256", 300, Clock(clock.now - 10))
    assert other_member.check(token) == ("alice", 7)  # any member with the key checks it alone


@pytest.mark.parametrize("method", ["HS256", "HS384", "HS512"])
def test_each_method_signs_and_refuses_tokens_of_another_key_or_method(method: str) -> None:
    tokens = JwtTokens(KEY, method, 300, Clock())
    token = tokens.issue("root", 1)
    assert tokens.check(token) == ("root", 1)
    assert JwtTokens(b"x" * 64, method, 300, Clock()).check(token) is None
    other = "HS256" if method != "HS256" else "HS512"
    assert JwtTokens(KEY, other, 300, Clock()).check(token) is None


def test_a_changed_claim_or_a_header_choosing_its_own_check_is_refused() -> None:
    clock = Clock()
    tokens = JwtTokens(KEY, "HS256", 300, clock)
    header, payload, signature = tokens.issue("alice", 7).split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["username"] = "root"
    assert tokens.check(f"{header}.{b64(json.dumps(claims).encode())}.{signature}") is None
    exp = int(clock.now) + 60
    unsigned = forge({"alg": "none", "typ": "JWT"}, {"username": "root", "revision": 7, "exp": exp})
    assert tokens.check(unsigned.rsplit(".", 1)[0] + ".") is None
    assert tokens.check(forge({"alg": "none"}, {"username": "root", "revision": 7, "exp": exp})) is None


@pytest.mark.parametrize(
    "claims",
    [
        {"username": 5, "revision": 7, "exp": 2_000_000_000},
        {"username": "a", "revision": "7", "exp": 2_000_000_000},
        {"username": "a", "revision": True, "exp": 2_000_000_000},
        {"username": "a", "revision": 7, "exp": 2_000_000_000.5},
        {"username": "a", "revision": 7},
        [1, 2, 3],
    ],
)
def test_signed_claims_of_the_wrong_shape_are_refused(claims: object) -> None:
    tokens = JwtTokens(KEY, "HS256", 300, Clock())
    header = tokens.issue("a", 1).split(".")[0]
    signed = f"{header}.{b64(json.dumps(claims).encode())}"
    token = f"{signed}.{b64(hmac.new(KEY, signed.encode(), hashlib.sha256).digest())}"
    assert tokens.check(token) is None


@pytest.mark.parametrize("token", ["", "a", "a.b", "a.b.c.d", "...", "%%.%%.%%", "a" * 10_000 + ".b.c"])
def test_garbage_is_refused(token: str) -> None:
    assert JwtTokens(KEY, "HS256", 300, Clock()).check(token) is None


def test_the_key_file_is_private_and_long_enough(tmp_path: Path) -> None:
    path = tmp_path / "jwt.key"
    path.write_bytes(os.urandom(MIN_KEY_BYTES))
    path.chmod(0o600)
    assert len(load_key(str(path))) == MIN_KEY_BYTES
    path.chmod(0o640)
    with pytest.raises(JwtKeyError, match="readable by others"):
        load_key(str(path))
    path.chmod(0o600)
    path.write_bytes(b"short")
    with pytest.raises(JwtKeyError, match="at least 32"):
        load_key(str(path))
    path.write_bytes(os.urandom(48))
    assert len(load_key(str(path), "HS384")) == 48
    with pytest.raises(JwtKeyError, match="HS512 JWT key needs at least 64"):
        load_key(str(path), "HS512")
    with pytest.raises(JwtKeyError, match="cannot read"):
        load_key(str(tmp_path / "missing"))
    with pytest.raises(JwtKeyError, match="sign-method"):
        JwtTokens(KEY, "RS1024", 300, Clock())


RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEYS = {m: ec.generate_private_key(c()) for m, c in (("ES256", ec.SECP256R1), ("ES384", ec.SECP384R1))}


def private_key(method: str) -> object:
    return EC_KEYS[method] if method.startswith("ES") else RSA_KEY


def write_pem(path: Path, key: object, public: bool = False) -> str:
    if public:
        data = key.public_key().public_bytes(  # type: ignore[attr-defined]
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    else:
        data = key.private_bytes(  # type: ignore[attr-defined]
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    path.write_bytes(data)
    path.chmod(0o600)
    return str(path)


@pytest.mark.parametrize("method", ["RS256", "RS512", "PS256", "PS384", "ES256", "ES384"])
def test_asymmetric_methods_sign_with_the_private_key_and_check_with_the_public_one(
    method: str, tmp_path: Path
) -> None:
    key = private_key(method)
    priv = write_pem(tmp_path / "jwt.pem", key)
    pub = write_pem(tmp_path / "jwt.pub", key, public=True)
    signer = JwtTokens.from_options(JwtOptions(priv, method, 300, pub), Clock())
    token = signer.issue("alice", 3)
    assert signer.check(token) == ("alice", 3)
    checker = JwtTokens.from_options(JwtOptions("", method, 300, pub), Clock())  # pub-key only
    assert checker.check(token) == ("alice", 3)
    with pytest.raises(EtcdzError) as refused:  # etcd's verify-only member: log in elsewhere
        checker.issue("alice", 3)
    assert refused.value.code == ErrorCode.UNAVAILABLE
    derived = JwtTokens.from_options(JwtOptions(priv, method, 300), Clock())  # no pub-key: derived
    assert derived.check(token) == ("alice", 3)
    other = rsa.generate_private_key(65537, 2048) if method[0] in "RP" else ec.generate_private_key(key.curve)  # type: ignore[attr-defined]
    assert JwtTokens(other, method, 300, Clock()).check(token) is None


def test_an_rsa_token_cannot_be_forged_with_the_public_key_as_an_hmac_secret(tmp_path: Path) -> None:
    pub = write_pem(tmp_path / "jwt.pub", RSA_KEY, public=True)
    checker = JwtTokens.from_options(JwtOptions("", "RS256", 300, pub), Clock())
    claims = {"username": "root", "revision": 9, "exp": 2_000_000_000}
    forged = forge({"alg": "HS256", "typ": "JWT"}, claims, key=open(pub, "rb").read())
    assert checker.check(forged) is None
    ps_token = JwtTokens(RSA_KEY, "PS256", 300, Clock()).issue("root", 9)
    assert checker.check(ps_token) is None  # another method under the same key: refused too


def test_asymmetric_keys_must_fit_their_method_and_each_other(tmp_path: Path) -> None:
    rsa_priv = write_pem(tmp_path / "rsa.pem", RSA_KEY)
    es256 = write_pem(tmp_path / "es256.pem", EC_KEYS["ES256"])
    es256_pub = write_pem(tmp_path / "es256.pub", EC_KEYS["ES256"], public=True)
    small = write_pem(tmp_path / "small.pem", rsa.generate_private_key(65537, 1024))
    other_pub = write_pem(tmp_path / "other.pub", rsa.generate_private_key(65537, 2048), public=True)
    hmac_secret = tmp_path / "secret"
    hmac_secret.write_bytes(KEY)
    hmac_secret.chmod(0o600)
    for options, fragment in (
        (JwtOptions(es256, "RS256"), "needs an RSA key"),
        (JwtOptions(rsa_priv, "ES256"), "needs an ECDSA key"),
        (JwtOptions(es256, "ES384"), "needs a key on secp384r1"),
        (JwtOptions("", "ES512", pub_key_file=es256_pub), "needs a key on secp521r1"),
        (JwtOptions(small, "RS256"), "at least 2048 bits"),
        (JwtOptions(rsa_priv, "RS256", pub_key_file=other_pub), "inconsistent"),
        (JwtOptions(str(hmac_secret), "RS256"), "cannot load the JWT keys"),
        (JwtOptions("", "RS256"), "needs priv-key=FILE and/or pub-key=FILE"),
        (JwtOptions(str(tmp_path / "missing.pem"), "PS256"), "cannot read the JWT private key"),
    ):
        with pytest.raises(JwtKeyError, match=fragment):
            load_keys(options)
    (tmp_path / "rsa.pem").chmod(0o644)
    with pytest.raises(JwtKeyError, match="readable by others"):
        load_keys(JwtOptions(rsa_priv, "RS256"))
