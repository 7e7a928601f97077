"""A renewed certificate is served without a restart (as controller-runtime's certwatcher)."""

from __future__ import annotations

import asyncio
import os
import shutil
import ssl
from pathlib import Path

from aiohttp import web
from cryptography import x509

from dualstack_operator.observability.tls import ServerTLS, self_signed


async def _served_serial(port: int) -> int:
    """The serial number of the certificate a new TLS connection is given."""
    client = ssl.create_default_context()
    client.check_hostname = False
    client.verify_mode = ssl.CERT_NONE
    _, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client)
    der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    writer.close()
    await writer.wait_closed()
    return int(x509.load_der_x509_certificate(der).serial_number)


def _serial(cert: Path) -> int:
    return int(x509.load_pem_x509_certificate(cert.read_bytes()).serial_number)


def _renew(mounted: Path, fresh: Path) -> None:
    """What the kubelet does to a Secret's volume: new files, swapped in at once."""
    staged = mounted.with_name(mounted.name + ".new")
    shutil.copytree(fresh, staged)
    for name in ("tls.crt", "tls.key", "ca.crt"):
        os.replace(staged / name, mounted / name)
    shutil.rmtree(staged)


async def test_a_renewed_certificate_is_served_to_new_connections(tmp_path: Path) -> None:
    mounted, renewed = tmp_path / "secret", tmp_path / "renewed"
    for directory in (mounted, renewed):
        _, _, ca = self_signed(directory, ["127.0.0.1"])
        (directory / "ca.crt").write_bytes(ca)
    first, second = _serial(mounted / "tls.crt"), _serial(renewed / "tls.crt")

    tls = ServerTLS.from_dir(mounted)
    app = web.Application()
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=tls.context)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        assert await _served_serial(port) == first
        assert not tls.reload_if_changed(), "nothing changed: nothing reloaded"
        _renew(mounted, renewed)
        assert tls.reload_if_changed()
        assert await _served_serial(port) == second, "the renewed one, same server"
        assert tls.ca_bundle() == (renewed / "ca.crt").read_bytes()
    finally:
        await runner.cleanup()


def test_a_half_written_pair_is_left_for_the_next_look(tmp_path: Path) -> None:
    mounted, other = tmp_path / "secret", tmp_path / "other"
    for directory in (mounted, other):
        self_signed(directory, ["127.0.0.1"])
    tls = ServerTLS.from_dir(mounted)
    os.replace(other / "tls.crt", mounted / "tls.crt")  # the key does not match yet
    assert not tls.reload_if_changed()
    os.replace(other / "tls.key", mounted / "tls.key")
    assert tls.reload_if_changed()
