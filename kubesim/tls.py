"""Self-signed CA and serving certificate for kubesim's HTTPS listener.

Contract: `make_certificates(directory, hosts=("127.0.0.1", "localhost")) -> CertificateFiles` writes
`ca.crt`, `ca.key`, `server.crt`, `server.key` (PEM) into `directory`; the serving cert is signed by the CA and
carries the hosts as SubjectAltNames (IPs as IP SANs). `server_ssl_context(files, client_certificates=False)`
builds the server-side context (with `client_certificates`, it asks clients for a certificate and verifies one
against the CA, as kube-apiserver's `--client-ca-file`); clients trust `ca.crt` exactly as they would a real
cluster's CA. `issue_client_certificate(files, user, groups=())` signs a client certificate (CN = user,
O = groups, as Kubernetes reads them) and returns its PEM certificate and key.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class CertificateFiles:
    """Paths of the generated PEM files."""

    ca_file: Path
    cert_file: Path
    key_file: Path
    ca_key_file: Path | None = None


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def make_certificates(directory: str | Path, hosts: Iterable[str] = ("127.0.0.1", "localhost")) -> CertificateFiles:
    """Generate a CA and a CA-signed serving certificate for `hosts`; returns the file paths."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(_name("kubesim-ca"))
        .issuer_name(_name("kubesim-ca"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False, data_encipherment=False,
                                     key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    server_key = ec.generate_private_key(ec.SECP256R1())
    sans: list[x509.GeneralName] = []
    for host in hosts:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            sans.append(x509.DNSName(host))
    server_cert = (
        x509.CertificateBuilder()
        .subject_name(_name("kubesim-apiserver"))
        .issuer_name(ca_cert.subject)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=365))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    ca_key_file = directory / "ca.key"
    files = CertificateFiles(directory / "ca.crt", directory / "server.crt", directory / "server.key", ca_key_file)
    files.ca_file.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    ca_key_file.write_bytes(ca_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                 serialization.NoEncryption()))
    ca_key_file.chmod(0o600)
    files.cert_file.write_bytes(server_cert.public_bytes(serialization.Encoding.PEM))
    files.key_file.write_bytes(server_key.private_bytes(serialization.Encoding.PEM,
                                                        serialization.PrivateFormat.PKCS8,
                                                        serialization.NoEncryption()))
    files.key_file.chmod(0o600)
    return files


def server_ssl_context(files: CertificateFiles, *, client_certificates: bool = False) -> ssl.SSLContext:
    """Server-side TLS context presenting the serving certificate (optionally verifying client certificates)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(files.cert_file), str(files.key_file))
    if client_certificates:
        # Optional, as kube-apiserver: a client without a certificate may still bring a bearer token.
        context.verify_mode = ssl.CERT_OPTIONAL
        context.load_verify_locations(cafile=str(files.ca_file))
    return context


def issue_client_certificate(files: CertificateFiles, user: str, groups: Iterable[str] = ()) -> tuple[bytes, bytes]:
    """A client certificate signed by the CA for `user` (CN) in `groups` (O): (certificate PEM, key PEM)."""
    if files.ca_key_file is None:
        raise ValueError("these certificate files carry no CA key")
    ca_cert = x509.load_pem_x509_certificate(files.ca_file.read_bytes())
    ca_key = serialization.load_pem_private_key(files.ca_key_file.read_bytes(), password=None)
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise TypeError("unexpected CA key type")
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, user),
                         *(x509.NameAttribute(NameOID.ORGANIZATION_NAME, g) for g in groups)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return (cert.public_bytes(serialization.Encoding.PEM),
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()))


def client_ssl_context(ca_file: str | Path) -> ssl.SSLContext:
    """Client-side TLS context trusting only the kubesim CA."""
    return ssl.create_default_context(cafile=str(ca_file))


__all__ = ["CertificateFiles", "client_ssl_context", "issue_client_certificate", "make_certificates",
           "server_ssl_context"]
