"""A throwaway certificate authority for TLS on 127.0.0.1: a CA, a server certificate (for
127.0.0.1 and localhost) and client certificates whose Common Name is a user, as PEM files.

For tests and local trials of the gRPC door's TLS (docs/security.md); a real deployment uses its
own CA. ``python -m tools.pki DIR [USER...]`` writes them.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import sys
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALID = datetime.timedelta(days=2)


@dataclass(frozen=True)
class Pki:
    directory: str
    ca: str  # ca.pem
    server_cert: str
    server_key: str
    clients: dict[str, tuple[str, str]] = field(default_factory=dict)  # user -> (cert, key)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write(path: str, data: bytes) -> str:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    return path


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _issue(
    subject: str,
    issuer: x509.Name,
    signer: ec.EllipticCurvePrivateKey,
    key: ec.EllipticCurvePrivateKey,
    *,
    ca: bool = False,
    usage: x509.ObjectIdentifier | None = None,
    sans: list[x509.GeneralName] | None = None,
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + VALID)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if usage is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(signer, hashes.SHA256())


def issue(directory: str, users: list[str] | None = None, ca_name: str = "etcdz test CA") -> Pki:
    """A new CA in ``directory`` and the certificates it signs (files ``ca.pem``,
    ``server.pem``/``server-key.pem``, ``USER.pem``/``USER-key.pem``)."""
    os.makedirs(directory, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = _issue(ca_name, _name(ca_name), ca_key, ca_key, ca=True)
    pem = serialization.Encoding.PEM
    ca = _write(os.path.join(directory, "ca.pem"), ca_cert.public_bytes(pem))
    server_key = ec.generate_private_key(ec.SECP256R1())
    sans: list[x509.GeneralName] = [
        x509.DNSName("localhost"),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
    ]
    server = _issue(
        "etcdz", ca_cert.subject, ca_key, server_key, usage=ExtendedKeyUsageOID.SERVER_AUTH, sans=sans
    )
    server_cert = _write(os.path.join(directory, "server.pem"), server.public_bytes(pem))
    server_key_path = _write(os.path.join(directory, "server-key.pem"), _key_pem(server_key))
    clients = {}
    for user in users or []:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = _issue(user, ca_cert.subject, ca_key, key, usage=ExtendedKeyUsageOID.CLIENT_AUTH)
        clients[user] = (
            _write(os.path.join(directory, f"{user}.pem"), cert.public_bytes(pem)),
            _write(os.path.join(directory, f"{user}-key.pem"), _key_pem(key)),
        )
    return Pki(directory, ca, server_cert, server_key_path, clients)


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit("usage: python -m tools.pki DIR [USER...]")
    made = issue(sys.argv[1], sys.argv[2:])
    sys.stdout.write(f"{made}\n")
