"""``make image``: the Dockerfile, built with buildah (Debian's package), no Docker.

Nothing can be pulled here, so the Dockerfile's ``BASE`` is a Debian bookworm root made
with debootstrap (minbase, python3, python3-venv, ca-certificates), committed into
buildah's storage once per recipe and reused. The image is then written as an archive
(``.local/image/operator.tar``) and, with ``--import-to``, loaded into the local node's
containerd. Users build the same file with Docker on ``python:3.12-slim-bookworm``.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from localcluster.paths import node_bin_dir
from prereqs import require

REPO = Path(__file__).resolve().parent.parent
NAME = "localhost/dualstack/dualstack-operator:dev"
SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
PACKAGES = ("python3", "python3-venv", "ca-certificates")
# What a runtime image never reads: package caches and lists, docs, man pages, locales.
TRIM = (
    "var/cache/apt",
    "var/lib/apt/lists",
    "usr/share/doc",
    "usr/share/man",
    "usr/share/info",
    "usr/share/locale",
    "var/log",
)
RECIPE = f"{SUITE} {MIRROR} {' '.join(PACKAGES)} {TRIM}"
RECIPE_KEY = hashlib.sha256(RECIPE.encode()).hexdigest()[:12]
BASE = f"localhost/dualstack/debian-python:{SUITE}-{RECIPE_KEY}"
# chroot isolation: no OCI runtime, cgroups or network namespace needed for RUN steps.
BUILDAH_ENV = {**os.environ, "BUILDAH_ISOLATION": "chroot"}


def cache_root() -> Path:
    base = os.environ.get("DUALSTACK_CACHE") or os.environ.get("XDG_CACHE_HOME")
    root = Path(base) if base else Path.home() / ".cache"
    return root / ("" if os.environ.get("DUALSTACK_CACHE") else "dualstack-operator") / "image"


def buildah(*args: str, capture: bool = False) -> str:
    out = subprocess.run(
        ["buildah", *args],
        env=BUILDAH_ENV,
        check=True,
        text=True,
        stdout=subprocess.PIPE if capture else None,
    )
    return out.stdout.strip() if capture else ""


def _exists(image: str) -> bool:
    probe = ["buildah", "inspect", "--type", "image", image]
    found = subprocess.run(probe, env=BUILDAH_ENV, capture_output=True, check=False)
    return found.returncode == 0


def base_rootfs() -> Path:
    """Debian's minimal root with Python and its venv module, debootstrapped once."""
    dir = cache_root() / f"{SUITE}-python3-{RECIPE_KEY}"
    rootfs = dir / "rootfs"
    if (dir / "complete").exists():
        return rootfs
    shutil.rmtree(dir, ignore_errors=True)
    dir.mkdir(parents=True)
    print(f"image: debootstrap {SUITE} with {', '.join(PACKAGES)}", file=sys.stderr)
    subprocess.run(
        ["debootstrap", "--variant=minbase", f"--include={','.join(PACKAGES)}", SUITE,
         str(rootfs), MIRROR],
        check=True, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    for sub in TRIM:
        shutil.rmtree(rootfs / sub, ignore_errors=True)
    for entry in (rootfs / "dev").iterdir():  # the runtime provides /dev
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()
    (dir / "complete").touch()
    return rootfs


def base_image() -> str:
    """The Dockerfile's BASE for local builds, in buildah's storage (made once)."""
    if _exists(BASE):
        return BASE
    rootfs = base_rootfs()
    with tempfile.TemporaryDirectory(prefix="dualstack-base-") as tmp:
        archive = Path(tmp) / "rootfs.tar"
        subprocess.run(["tar", "-C", str(rootfs), "-cf", str(archive), "."], check=True)
        container = buildah("from", "scratch", capture=True)
        try:
            buildah("add", "--quiet", container, str(archive), "/")
            buildah("config", "--env", "PATH=/usr/local/bin:/usr/bin:/bin", container)
            buildah("commit", "--quiet", "--rm", container, BASE, capture=True)
        except BaseException:
            subprocess.run(["buildah", "rm", container], env=BUILDAH_ENV, check=False)
            raise
    return BASE


def build(archive: Path) -> Path:
    """Builds the Dockerfile on the local base and writes the image to ``archive``
    (a docker-archive that containerd imports under the image's name)."""
    require("image")
    base = base_image()
    began = time.monotonic()
    # The host's trust store for the pip step (a proxy's CA, if the host has one).
    trust = Path(os.environ.get("SSL_CERT_FILE") or "/etc/ssl/certs/ca-certificates.crt")
    secret = [f"--secret=id=ca-certificates,src={trust}"] if trust.exists() else []
    buildah(
        "build", "--quiet", "--pull=never", "--network=host", "--layers", *secret,
        f"--build-arg=BASE={base}", "--tag", NAME, "--file", str(REPO / "Dockerfile"), str(REPO),
    )  # fmt: skip
    archive.parent.mkdir(parents=True, exist_ok=True)
    archive.unlink(missing_ok=True)
    buildah("push", "--quiet", NAME, f"docker-archive:{archive}:{NAME}")
    print(f"image: built in {time.monotonic() - began:.0f}s", file=sys.stderr)
    return archive


def size_mib(image: str = NAME) -> float:
    """The image's uncompressed size (its layers)."""
    out = buildah("images", "--format", "{{.Size}}", image, capture=True)
    return float(out.split()[0]) if out.endswith("MB") else float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, default=REPO / ".local" / "image" / "operator.tar")
    parser.add_argument(
        "--import-to",
        type=Path,
        metavar="SOCKET",
        help="also load it into this containerd (the local node's, in namespace k8s.io)",
    )
    args = parser.parse_args()
    archive = build(args.out.resolve())
    print(f"{NAME}: {archive} ({archive.stat().st_size / 2**20:.1f} MiB)")
    if args.import_to:
        # ctr reads a relative address as a URL ("invalid (non-empty) authority"): absolute.
        socket = args.import_to.resolve()
        ctr = node_bin_dir(build=False) / "ctr"
        subprocess.run(
            [str(ctr), "-a", str(socket), "-n", "k8s.io", "images", "import", str(archive)],
            check=True,
        )
        print(f"{NAME}: loaded into the node's containerd ({socket})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
