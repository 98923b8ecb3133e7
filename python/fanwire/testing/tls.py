"""A self-signed certificate for test servers, and client contexts that trust it.

One certificate (for ``127.0.0.1`` and ``localhost``) is made per process, on first use,
with ``cryptography`` (no network, no ``openssl`` binary); its files live in a temporary
directory. The key is written as PKCS#8, which uvicorn, hypercorn and granian all read.
"""

from __future__ import annotations

import datetime
import ipaddress
import ssl
import tempfile
from dataclasses import dataclass
from functools import cache
from pathlib import Path


@dataclass(frozen=True)
class Certificate:
    """A certificate and its key on disk (PEM)."""

    certfile: Path
    keyfile: Path

    def client_context(self) -> ssl.SSLContext:
        """A client context that trusts this certificate (and checks the host name)."""
        return ssl.create_default_context(cafile=str(self.certfile))


@cache
def certificate() -> Certificate:
    """This process's self-signed test certificate (made once, on first call)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fanwire test server")])
    now = datetime.datetime.now(datetime.UTC)
    names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    directory = Path(tempfile.mkdtemp(prefix="fanwire-test-tls-"))
    certfile, keyfile = directory / "cert.pem", directory / "key.pem"
    certfile.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    keyfile.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    keyfile.chmod(0o600)
    return Certificate(certfile, keyfile)


def client_context_for(url: str) -> ssl.SSLContext | None:
    """For an ``https://``/``wss://`` URL, a context trusting :func:`certificate`."""
    if url.startswith(("https://", "wss://")):
        return certificate().client_context()
    return None
