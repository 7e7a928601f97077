"""``make image``: the operator's OCI image, built without Docker or a registry.

The same shape as the Dockerfile's (for users with Docker): a slim Debian bookworm
root with Python, the operator and its dependencies installed from the wheel, user
and group 65532, ``dualstack-operator`` as the entrypoint and ``run`` as the
command, no compilers, nothing written at run time (a read-only root works). The
base root filesystem comes from Debian's packages (debootstrap, minbase, plus
python3 and ca-certificates) and is cached per user; the operator's layer is built
from this checkout each time. One difference: bookworm's python3 is 3.11, the
Dockerfile's base image has 3.12 (the package supports both).
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import ociimage
from localcluster.paths import node_bin_dir

REPO = Path(__file__).resolve().parent.parent
NAME = "localhost/dualstack/dualstack-operator:dev"
SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
PACKAGES = ("python3", "ca-certificates")
SITE = "usr/local/lib/python3.11/dist-packages"  # on bookworm's python3 sys.path
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
LAUNCHER = """#!/usr/bin/python3
import sys

from dualstack_operator.cli import main

sys.exit(main())
"""


def cache_root() -> Path:
    import os

    base = os.environ.get("DUALSTACK_CACHE") or os.environ.get("XDG_CACHE_HOME")
    root = Path(base) if base else Path.home() / ".cache"
    return root / ("" if os.environ.get("DUALSTACK_CACHE") else "dualstack-operator") / "image"


def base_rootfs() -> Path:
    """Debian's minimal root with python3, debootstrapped once and cached."""
    key = hashlib.sha256(f"{SUITE} {MIRROR} {' '.join(PACKAGES)} {TRIM}".encode()).hexdigest()
    dir = cache_root() / f"{SUITE}-python3-{key[:12]}"
    rootfs = dir / "rootfs"
    if (dir / "complete").exists():
        return rootfs
    if shutil.which("debootstrap") is None:
        raise SystemExit("make image needs debootstrap (apt-get install debootstrap)")
    shutil.rmtree(dir, ignore_errors=True)
    dir.mkdir(parents=True)
    print(f"image: debootstrap {SUITE} with {', '.join(PACKAGES)}", file=sys.stderr)
    subprocess.run(
        [
            "debootstrap",
            "--variant=minbase",
            f"--include={','.join(PACKAGES)}",
            SUITE,
            str(rootfs),
            MIRROR,
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    for sub in TRIM:
        shutil.rmtree(rootfs / sub, ignore_errors=True)
    for entry in (rootfs / "dev").iterdir():  # the runtime provides /dev
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()
    (dir / "complete").touch()
    return rootfs


def operator_tree(rootfs: Path, stage: Path) -> Path:
    """The operator's layer: the package and its dependencies, the launcher, the user."""
    target = stage / SITE
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-compile",
            "--no-warn-script-location",
            "--target",
            str(target),
            str(REPO),
        ],
        check=True,
    )
    shutil.rmtree(target / "bin", ignore_errors=True)  # console scripts for the host's Python
    launcher = stage / "usr/local/bin/dualstack-operator"
    launcher.parent.mkdir(parents=True, exist_ok=True)
    launcher.write_text(LAUNCHER)
    launcher.chmod(0o755)
    etc = stage / "etc"
    etc.mkdir(parents=True, exist_ok=True)
    passwd = (rootfs / "etc/passwd").read_text()
    group = (rootfs / "etc/group").read_text()
    (etc / "passwd").write_text(passwd + "operator:x:65532:65532::/nonexistent:/usr/sbin/nologin\n")
    (etc / "group").write_text(group + "operator:x:65532:\n")
    return stage


def build(archive: Path) -> Path:
    rootfs = base_rootfs()
    with tempfile.TemporaryDirectory(prefix="dualstack-image-") as tmp:
        stage = operator_tree(rootfs, Path(tmp) / "stage")
        image = ociimage.Image(
            NAME,
            files=(),
            entrypoint=["dualstack-operator"],
            cmd=["run"],
            user="65532:65532",
            env=[
                "PATH=/usr/local/bin:/usr/bin:/bin",
                "PYTHONDONTWRITEBYTECODE=1",
                "PYTHONUNBUFFERED=1",
            ],
            trees=[rootfs, stage],
            ports=[8080, 8081, 9443],
        )
        archive.parent.mkdir(parents=True, exist_ok=True)
        return ociimage.write(image, archive)


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
    archive = build(args.out)
    print(f"{NAME}: {archive} ({archive.stat().st_size / 2**20:.1f} MiB compressed)")
    if args.import_to:
        ctr = node_bin_dir(build=False) / "ctr"
        subprocess.run(
            [str(ctr), "-a", str(args.import_to), "-n", "k8s.io", "images", "import", str(archive)],
            check=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
