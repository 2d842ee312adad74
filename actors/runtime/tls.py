"""TLS for etcd's gRPC API: its flags, read and checked at start, for the member's door and the
standalone one (``etcdz grpc-gateway``).

etcd's client TLS flags are ``--cert-file``, ``--key-file``, ``--trusted-ca-file`` and
``--client-cert-auth``; in etcdz ``--key-file`` and ``--client-cert-auth`` are the ZeroMQ
endpoints' CurveZMQ settings, so the gRPC door's take a ``grpc-`` prefix. As in etcd:
- an ``https://`` URL serves TLS with the certificate and key (PEM), and needs both;
- an ``http://`` URL serves plaintext even when they are given (etcd warns and ignores them);
- ``--grpc-client-cert-auth`` needs ``--grpc-trusted-ca-file``: a client without a certificate
  signed by one of its CAs is refused during the handshake, and the verified certificate's
  Common Name is the user of a request that carries no token (etcd's "CommonName as user").

Every file is read and checked here, at start (a key that is not the certificate's, a file that
is no PEM), so that a bad one stops the start with the flag's name, never a later handshake.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from actors.runtime.flagtable import boolean

GRPC_TLS_FLAGS: dict[str, tuple[Callable[[str], object], object, str]] = {
    "grpc-cert-file": (
        str,
        "",
        "PEM certificate the https:// --listen-grpc-urls serve with (etcd's --cert-file)",
    ),
    "grpc-key-file": (str, "", "PEM private key of --grpc-cert-file (etcd's --key-file)"),
    "grpc-trusted-ca-file": (
        str,
        "",
        "PEM CA certificates that sign the gRPC clients' certificates (etcd's --trusted-ca-file)",
    ),
    "grpc-client-cert-auth": (
        boolean,
        False,
        "refuse gRPC clients without a certificate signed by --grpc-trusted-ca-file; its Common "
        "Name is the user of a request without a token (etcd's --client-cert-auth)",
    ),
}


@dataclass(frozen=True, slots=True)
class GrpcTls:
    """The PEM bytes a door serves TLS with (read once, at start)."""

    cert: bytes
    key: bytes
    trusted_ca: bytes = b""  # empty: client certificates are not asked for
    client_cert_auth: bool = False


def _read(path: str, flag: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        raise ValueError(f"--{flag}: cannot read {path}: {exc.strerror or exc}") from None


def _public(key: Any) -> bytes:
    """A public key (or a private key's public half) as DER bytes, to compare keys by."""
    from cryptography.hazmat.primitives import serialization

    public = key.public_key() if hasattr(key, "private_bytes") else key
    return bytes(
        public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )


def load(cert_file: str, key_file: str, trusted_ca_file: str = "", client_cert_auth: bool = False) -> GrpcTls:
    """The files, read and checked: raises ValueError naming the flag at fault. (cryptography
    loads only then: ~100 ms every member start would pay otherwise.)"""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    if client_cert_auth and not trusted_ca_file:
        raise ValueError(
            "--grpc-client-cert-auth needs --grpc-trusted-ca-file (the CA of the clients' certificates)"
        )
    if not cert_file or not key_file:
        missing = "--grpc-cert-file" if not cert_file else "--grpc-key-file"
        raise ValueError(
            f"TLS for the gRPC API (https:// --listen-grpc-urls) needs --grpc-cert-file and "
            f"--grpc-key-file: {missing} is not set"
        )
    cert = _read(cert_file, "grpc-cert-file")
    key = _read(key_file, "grpc-key-file")
    try:
        chain = x509.load_pem_x509_certificates(cert)
    except ValueError as exc:
        raise ValueError(f"--grpc-cert-file: {cert_file} holds no PEM certificate ({exc})") from None
    try:
        private = serialization.load_pem_private_key(key, password=None)
    except (ValueError, TypeError) as exc:
        raise ValueError(
            f"--grpc-key-file: {key_file} holds no unencrypted PEM private key ({exc})"
        ) from None
    if _public(chain[0].public_key()) != _public(private):
        raise ValueError(f"--grpc-key-file: {key_file} is not the key of the certificate in --grpc-cert-file")
    trusted = _trusted(trusted_ca_file) if trusted_ca_file else b""
    return GrpcTls(cert, key, trusted, client_cert_auth)


def _trusted(trusted_ca_file: str) -> bytes:
    from cryptography import x509

    trusted = _read(trusted_ca_file, "grpc-trusted-ca-file")
    try:
        x509.load_pem_x509_certificates(trusted)
    except ValueError as exc:
        raise ValueError(
            f"--grpc-trusted-ca-file: {trusted_ca_file} holds no PEM certificate ({exc})"
        ) from None
    return trusted


def grpc_urls(value: str, flag: str) -> list[str]:
    """``http://host:port`` or ``https://host:port`` URLs, comma-separated."""
    found = [part.strip() for part in value.split(",") if part.strip()]
    for url in found:
        host, _, port = url.removeprefix("https://").removeprefix("http://").rpartition(":")
        if not url.startswith(("http://", "https://")) or not host or not port.isdigit():
            raise ValueError(f"{flag} must be http://host:port or https://host:port, got {url!r}")
    return found


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """The gRPC TLS flags as given (paths absolute)."""

    cert_file: str = ""
    key_file: str = ""
    trusted_ca_file: str = ""
    client_cert_auth: bool = False

    @property
    def given(self) -> bool:
        return bool(self.cert_file or self.key_file or self.trusted_ca_file or self.client_cert_auth)

    def load(self) -> GrpcTls:
        return load(self.cert_file, self.key_file, self.trusted_ca_file, self.client_cert_auth)


def files(values: Mapping[str, object]) -> TlsFiles:
    """The flags among parsed ``values``."""

    def path(flag: str) -> str:
        return os.path.abspath(str(values[flag])) if values[flag] else ""

    return TlsFiles(
        cert_file=path("grpc-cert-file"),
        key_file=path("grpc-key-file"),
        trusted_ca_file=path("grpc-trusted-ca-file"),
        client_cert_auth=bool(values["grpc-client-cert-auth"]),
    )


def check(given: TlsFiles, listen_urls: list[str]) -> None:
    """Raise ValueError (naming the flag) unless the door can serve ``listen_urls`` with
    ``given``: an https URL needs the certificate and its key; files given are read and
    checked even when every URL is http (as etcd reads them at start; a certificate without
    its key, or the reverse, is refused there too)."""
    if any(url.startswith("https://") for url in listen_urls) or given.cert_file or given.key_file:
        given.load()
        return
    if given.client_cert_auth and not given.trusted_ca_file:
        raise ValueError("--grpc-client-cert-auth needs --grpc-trusted-ca-file")
    if given.trusted_ca_file:
        _trusted(given.trusted_ca_file)


def plaintext_warning(listen_urls: list[str], given: TlsFiles) -> str:
    """What a door says when TLS flags are given and some URL is http (etcd: "scheme is
    HTTP while key and cert files are present; ignoring key and cert files")."""
    plain = [url for url in listen_urls if url.startswith("http://")]
    if given.given and plain:
        return f"the --grpc-* TLS flags do not apply to http:// URLs: {', '.join(plain)} serve plaintext"
    return ""
