"""Password hashes: scrypt (memory-hard, in the standard library), never the password itself.

A hash reads ``scrypt$N$r$p$salt$digest`` (salt and digest in URL-safe base64), so the cost can
be raised later without invalidating stored hashes. Hashing is deliberately slow (tens of
milliseconds): it is done once per ``user add`` / ``passwd`` and once per login attempt, which
the gateway rate-limits.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

SCRYPT_N = 1 << 14  # 16 MiB of memory per hash with r=8
SCRYPT_R = 8
SCRYPT_P = 1
MAX_PASSWORD_BYTES = 1024  # beyond this a "password" is an attack on the hash, not a secret


def hash_password(password: str, salt: bytes) -> str:
    """The stored form of ``password``; ``salt`` must be fresh random bytes (16 or more)."""
    digest = _scrypt(password, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, stored: str) -> bool:
    """Whether ``password`` matches ``stored`` (False for any malformed stored hash)."""
    parts = stored.split("$")
    if len(parts) != 6 or parts[0] != "scrypt":
        return False
    try:
        n, r, p = int(parts[1]), int(parts[2]), int(parts[3])
        salt, expected = _unb64(parts[4]), _unb64(parts[5])
    except ValueError:
        return False
    if len(password.encode()) > MAX_PASSWORD_BYTES or not salt:
        return False
    try:
        return hmac.compare_digest(_scrypt(password, salt, n, r, p), expected)
    except (ValueError, MemoryError):  # parameters scrypt refuses: not a hash we made
        return False


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, maxmem=64 * 1024**2, dklen=32)


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
