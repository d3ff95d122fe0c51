"""TLS for the team server when it listens beyond loopback: a certificate the team provides,
or one this module makes (self-signed, for the machine's name and addresses), which clients
then trust through MLflow's ``MLFLOW_TRACKING_SERVER_CERT_PATH``."""

from __future__ import annotations

import datetime
import ipaddress
import os
import socket
from pathlib import Path

LOOPBACK = ("127.0.0.1", "::1", "localhost")
DAYS = 825  # the longest validity clients accept for a server certificate


def needs_tls(host: str) -> bool:
    return host not in LOOPBACK


def self_signed(folder: Path, host: str) -> tuple[Path, Path]:
    """``cert.pem`` and ``key.pem`` (0600) in ``folder``, made once: for ``host``, this
    machine's name and loopback. Returns (certificate, key)."""
    cert, key = folder / "cert.pem", folder / "key.pem"
    if cert.exists() and key.exists():
        return cert, key
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    names: list[x509.GeneralName] = [x509.DNSName(socket.gethostname()), x509.DNSName("localhost")]
    for address in {host, "127.0.0.1"}:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(address)))
        except ValueError:
            names.append(x509.DNSName(address))
    private = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "waterml team MLflow")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(private.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=DAYS))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(private, hashes.SHA256())
    )
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(private.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))  # fmt: skip
    cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    return cert, key
