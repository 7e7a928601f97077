"""TLS for the operator's servers (the webhook, secure metrics): the pair from a mounted
Secret, reloaded when it is renewed, or a throwaway self-signed one for local runs."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import logging
import socket
import ssl
import tempfile
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger("dualstack_operator.observability.tls")
RELOAD_SECONDS = 10.0  # how often the mounted files are looked at


def self_signed(directory: Path, hosts: Sequence[str]) -> tuple[Path, Path, bytes]:
    """A throwaway CA and serving certificate for local runs; returns cert, key, CA PEM."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "dualstack-operator webhook CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    sans: list[x509.GeneralName] = []
    for host in hosts:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            sans.append(x509.DNSName(host))
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=365))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = directory / "tls.crt", directory / "tls.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    return cert_path, key_path, ca.public_bytes(serialization.Encoding.PEM)


@dataclass
class ServerTLS:
    """A server context over a certificate and key on disk, reloaded when the files
    change, as controller-runtime's certwatcher does: cert-manager renews the Secret and
    the kubelet swaps the mounted files; new connections then get the new certificate,
    with no restart."""

    cert: Path
    key: Path
    ca: Path | None = None  # the CA clients are told to trust (the webhook's caBundle)
    context: ssl.SSLContext = field(init=False)
    _stamp: tuple[tuple[int, int], ...] = field(init=False, default=())

    def __post_init__(self) -> None:
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.reload()

    @classmethod
    def from_dir(cls, cert_dir: Path) -> ServerTLS:
        """tls.crt, tls.key (and ca.crt) of a mounted Secret."""
        ca = cert_dir / "ca.crt"
        return cls(cert_dir / "tls.crt", cert_dir / "tls.key", ca if ca.exists() else None)

    @classmethod
    def self_signed(cls, hosts: Sequence[str], prefix: str) -> ServerTLS:
        directory = Path(tempfile.mkdtemp(prefix=prefix))
        cert, key, ca = self_signed(directory, hosts)
        (directory / "ca.crt").write_bytes(ca)
        return cls(cert, key, directory / "ca.crt")

    def ca_bundle(self) -> bytes:
        """The CA to trust: ca.crt if there is one, else the (self-issued) certificate."""
        return (self.ca or self.cert).read_bytes()

    def _files(self) -> tuple[tuple[int, int], ...]:
        out = []
        for path in (self.cert, self.key, *([self.ca] if self.ca else [])):
            st = path.stat()  # follows the mount's ..data symlink to the current files
            out.append((st.st_mtime_ns, st.st_ino))
        return tuple(out)

    def reload(self) -> None:
        # Tried on a scratch context first: a pair that does not load leaves the live
        # context as it was (OpenSSL would keep a new certificate with the old key).
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(
            str(self.cert), str(self.key)
        )
        self.context.load_cert_chain(str(self.cert), str(self.key))
        self._stamp = self._files()

    def reload_if_changed(self) -> bool:
        """Loads the files again if they changed; True if it did. A half-written pair
        (the old key with a new certificate) is left for the next look."""
        try:
            stamp = self._files()
            if stamp == self._stamp:
                return False
            self.reload()
        except (OSError, ssl.SSLError) as err:
            log.warning("cannot load the renewed certificate %s yet: %s", self.cert, err)
            return False
        log.info("reloaded the renewed certificate %s", self.cert)
        return True

    async def watch(
        self,
        interval: float = RELOAD_SECONDS,
        on_reload: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        """Looks at the files every ``interval`` seconds (a task; cancelled at shutdown)."""
        while True:
            await asyncio.sleep(interval)
            if self.reload_if_changed() and on_reload is not None:
                await on_reload()


def metrics_tls(cert_dir: Path | None) -> ServerTLS:
    """The metrics server's TLS: tls.crt and tls.key from a Secret, else self-signed
    (Prometheus then scrapes with insecure_skip_verify, as for controller-runtime)."""
    if cert_dir is not None:
        return ServerTLS.from_dir(cert_dir)
    hosts = [socket.gethostname(), "localhost", "127.0.0.1"]
    return ServerTLS.self_signed(hosts, "dualstack-metrics-")
