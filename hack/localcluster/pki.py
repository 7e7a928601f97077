"""The cluster's certificates and kubeconfigs: one CA, the API server's serving pair,
an identity per client (admin, the controller-manager, the operator under test, the
node's components), and the service-account signing key."""

from __future__ import annotations

import base64
import datetime
import ipaddress
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from localcluster.topology import NODE_NAME

# DNS names the API server answers to, in and out of the cluster.
APISERVER_NAMES = (
    "localhost",
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
)


def pem_key(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )


def name(cn: str, org: str | None = None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    if org:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    return x509.Name(attrs)


@dataclass(frozen=True)
class Issued:
    cert: bytes
    key: bytes


@dataclass(frozen=True)
class CA:
    """The cluster's certificate authority: it signs every other certificate."""

    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @property
    def pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @classmethod
    def new(cls, common_name: str = "dualstack-local-ca") -> CA:
        key = ec.generate_private_key(ec.SECP256R1())
        subject = name(common_name)
        cert = (
            _builder(subject, subject, key)
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
        return cls(cert, key)

    def issue(
        self,
        subject: x509.Name,
        *,
        server_sans: Sequence[x509.GeneralName] = (),
        client: bool = False,
    ) -> Issued:
        """A leaf certificate: a client identity, a serving pair (``server_sans``), or both."""
        key = ec.generate_private_key(ec.SECP256R1())
        builder = _builder(subject, self.cert.subject, key).add_extension(
            x509.BasicConstraints(ca=False, path_length=None), critical=True
        )
        usages = [ExtendedKeyUsageOID.CLIENT_AUTH] if client else []
        if server_sans:
            usages.append(ExtendedKeyUsageOID.SERVER_AUTH)
            builder = builder.add_extension(
                x509.SubjectAlternativeName(list(server_sans)), critical=False
            )
        builder = builder.add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        cert = builder.sign(self.key, hashes.SHA256())
        return Issued(cert.public_bytes(serialization.Encoding.PEM), pem_key(key))


def _builder(
    subject: x509.Name, issuer: x509.Name, key: ec.EllipticCurvePrivateKey
) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=365))
    )


def write(path: Path, data: bytes, mode: int = 0o600) -> None:
    path.write_bytes(data)
    path.chmod(mode)


def kubeconfig(server: str, ca: bytes, client: Issued, user: str) -> str:
    """A kubeconfig for one client identity (JSON, which is valid YAML: kubectl reads it)."""

    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode()

    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "local", "cluster": {"server": server, "certificate-authority-data": b64(ca)}}
        ],
        "users": [
            {
                "name": user,
                "user": {
                    "client-certificate-data": b64(client.cert),
                    "client-key-data": b64(client.key),
                },
            }
        ],
        "contexts": [{"name": "local", "context": {"cluster": "local", "user": user}}],
        "current-context": "local",
    }
    return json.dumps(doc, indent=2)


def _addresses(values: Sequence[str]) -> list[x509.GeneralName]:
    return [x509.IPAddress(ipaddress.ip_address(a)) for a in values]


def write_control_plane(
    state_dir: Path, server: str, service_cidrs: Sequence[str], host: Sequence[str] = ()
) -> CA:
    """Everything the control plane and its clients need, under ``state_dir``; ``host``:
    the host addresses a node's pods reach the API server at (none without a node)."""
    pki = state_dir / "pki"
    (pki / "kcm").mkdir(parents=True, exist_ok=True)
    ca = CA.new()
    write(pki / "ca.crt", ca.pem, 0o644)
    write(pki / "ca.key", pem_key(ca.key))

    sans: list[x509.GeneralName] = [x509.DNSName(n) for n in APISERVER_NAMES]
    sans += _addresses(["127.0.0.1", "::1", *host])
    # The first address of each service CIDR is the `kubernetes` Service's ClusterIP.
    sans += [x509.IPAddress(ipaddress.ip_network(c)[1]) for c in service_cidrs]
    serving = ca.issue(name("kube-apiserver"), server_sans=sans)
    write(pki / "apiserver.crt", serving.cert, 0o644)
    write(pki / "apiserver.key", serving.key)

    admin = ca.issue(name("admin", "system:masters"), client=True)
    write(pki / "admin.crt", admin.cert, 0o644)
    write(pki / "admin.key", admin.key)
    write(state_dir / "kubeconfig", kubeconfig(server, ca.pem, admin, "admin").encode())

    sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    write(pki / "sa.key", pem_key(sa_key))
    public = sa_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    write(pki / "sa.pub", public, 0o644)

    # The bootstrap RBAC policy binds this user; controllers then use their own
    # ServiceAccounts (--use-service-account-credentials), as in a real cluster.
    kcm_user = "system:kube-controller-manager"
    kcm = ca.issue(name(kcm_user), client=True)
    write(
        state_dir / "controller-manager.kubeconfig",
        kubeconfig(server, ca.pem, kcm, kcm_user).encode(),
    )
    # A separate identity for the operator under test, so the audit log tells its
    # writes from the test's own.
    operator = ca.issue(name("dualstack-operator", "system:masters"), client=True)
    write(
        state_dir / "operator.kubeconfig",
        kubeconfig(server, ca.pem, operator, "dualstack-operator").encode(),
    )
    return ca


def write_node(state_dir: Path, server: str, ca: CA, addresses: Sequence[str]) -> None:
    """The node's identities: the kubelet (client and serving), kube-proxy and the
    scheduler, each a user the bootstrap RBAC policy knows."""
    pki = state_dir / "pki"
    sans: list[x509.GeneralName] = [x509.DNSName(NODE_NAME), x509.DNSName("localhost")]
    sans += _addresses(["127.0.0.1", *addresses])
    serving = ca.issue(name(NODE_NAME), server_sans=sans)
    write(pki / "kubelet.crt", serving.cert, 0o644)
    write(pki / "kubelet.key", serving.key)
    for file, user, group in (
        ("kubelet", f"system:node:{NODE_NAME}", "system:nodes"),
        ("kube-proxy", "system:kube-proxy", None),
        ("scheduler", "system:kube-scheduler", None),
    ):
        issued = ca.issue(name(user, group), client=True)
        write(state_dir / f"{file}.kubeconfig", kubeconfig(server, ca.pem, issued, user).encode())
