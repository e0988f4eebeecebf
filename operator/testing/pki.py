"""The local control plane's certificates and kubeconfig (test PKI, never for production).

One CA signs the serving certificates of etcd and kube-apiserver, the clients'
certificates (the admin, the controller manager, the scheduler), and the
service-account token signing key; `kubeconfig_text` is the admin's kubeconfig.
`write_webhook_certificate` makes the operator's webhook a CA of its own and a
serving certificate for https://127.0.0.1, which the API server is told to trust.
"""

from __future__ import annotations

import base64
import datetime
import ipaddress
import json
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALIDITY = datetime.timedelta(days=365)
Key = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


def pem_key(key: Key) -> bytes:
    """A private key as unencrypted PKCS#8 PEM."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _name(common_name: str, organization: str | None = None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organization:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    return x509.Name(attrs)


def certificate_authority(common_name: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A self-signed CA certificate and its key."""
    now = datetime.datetime.now(datetime.UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(_name(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    return cert, key


def leaf_certificate(
    ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey],
    subject: x509.Name,
    usage: x509.ObjectIdentifier,
    sans: list[x509.GeneralName],
) -> tuple[bytes, bytes]:
    """A certificate signed by `ca` and its key, both PEM."""
    ca_cert, ca_key = ca
    now = datetime.datetime.now(datetime.UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    return cert.public_bytes(serialization.Encoding.PEM), pem_key(key)


def _write(path: Path, data: bytes) -> None:
    path.write_bytes(data)
    path.chmod(0o600)


def write_certificates(pki: Path) -> None:
    """A CA, the API server's serving cert, an admin client cert, the SA signing key."""
    pki.mkdir(parents=True, exist_ok=True)
    ca = certificate_authority("convergence-local-ca")
    serving_sans: list[x509.GeneralName] = [
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        x509.IPAddress(ipaddress.ip_address("10.0.0.1")),
        x509.DNSName("localhost"),
        x509.DNSName("kubernetes"),
        x509.DNSName("kubernetes.default"),
        x509.DNSName("kubernetes.default.svc"),
        x509.DNSName("kubernetes.default.svc.cluster.local"),
    ]
    serving_cert, serving_key = leaf_certificate(
        ca, _name("kube-apiserver"), ExtendedKeyUsageOID.SERVER_AUTH, serving_sans
    )
    # system:masters: the admin identity of tests and the demo. It bypasses
    # RBAC, so RBAC tests use ServiceAccount tokens instead.
    admin_cert, admin_key = leaf_certificate(
        ca, _name("convergence-admin", "system:masters"), ExtendedKeyUsageOID.CLIENT_AUTH, []
    )
    sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    files = {
        "ca.crt": ca[0].public_bytes(serialization.Encoding.PEM),
        "apiserver.crt": serving_cert,
        "apiserver.key": serving_key,
        "admin.crt": admin_cert,
        "admin.key": admin_key,
        "sa.key": pem_key(sa_key),
        "sa.pub": sa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
    }
    for filename, data in files.items():
        _write(pki / filename, data)


@dataclass(frozen=True)
class WebhookCertificate:
    """A webhook's serving certificate for https://127.0.0.1 and its own CA (files in a
    directory): the operator serves with `cert` and `key`, the API server trusts `ca`."""

    directory: Path

    @property
    def cert(self) -> Path:
        return self.directory / "webhook.crt"

    @property
    def key(self) -> Path:
        return self.directory / "webhook.key"

    @property
    def ca(self) -> Path:
        return self.directory / "webhook-ca.crt"

    @property
    def ca_bundle(self) -> str:
        """The CA as a webhook configuration's clientConfig.caBundle (base64 PEM)."""
        return base64.b64encode(self.ca.read_bytes()).decode()


def write_webhook_certificate(directory: Path) -> WebhookCertificate:
    """A CA of its own and a serving certificate for 127.0.0.1 and localhost, in `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    ca = certificate_authority("convergence-webhook-ca")
    sans: list[x509.GeneralName] = [
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        x509.DNSName("localhost"),
    ]
    cert, key = leaf_certificate(
        ca, _name("convergence-webhook"), ExtendedKeyUsageOID.SERVER_AUTH, sans
    )
    certificate = WebhookCertificate(directory)
    _write(certificate.cert, cert)
    _write(certificate.key, key)
    _write(certificate.ca, ca[0].public_bytes(serialization.Encoding.PEM))
    return certificate


def kubeconfig_text(server: str, pki: Path) -> str:
    def b64(filename: str) -> str:
        return base64.b64encode((pki / filename).read_bytes()).decode()

    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "convergence-local",
                "cluster": {"server": server, "certificate-authority-data": b64("ca.crt")},
            }
        ],
        "users": [
            {
                "name": "convergence-admin",
                "user": {
                    "client-certificate-data": b64("admin.crt"),
                    "client-key-data": b64("admin.key"),
                },
            }
        ],
        "contexts": [
            {
                "name": "convergence-local",
                "context": {"cluster": "convergence-local", "user": "convergence-admin"},
            }
        ],
        "current-context": "convergence-local",
    }
    # JSON is valid YAML, and keeps this module free of a YAML dependency.
    return json.dumps(config, indent=2)


# --- processes --------------------------------------------------------------
