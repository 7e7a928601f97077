"""Writes OCI image archives without a container engine or a registry.

An image here is one or more layers made from local files, a config (entrypoint,
user, environment) and a name; the archive is an OCI image layout in a tar, which
``ctr images import`` loads into containerd. Used for the pod sandbox's pause image,
the data-plane tests' echo server and the operator's own image (``hack/image``).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class File:
    path: str  # inside the image, without a leading "/"
    source: Path
    mode: int = 0o755


@dataclass(frozen=True)
class Image:
    name: str  # e.g. "localhost/dualstack/pause:1"
    files: Sequence[File]
    entrypoint: Sequence[str]
    user: str = "65535:65535"
    env: Sequence[str] = field(default_factory=lambda: ["PATH=/"])
    cmd: Sequence[str] = ()
    # Whole directory trees, each one layer, under the files' layer (a root filesystem).
    trees: Sequence[Path] = ()
    ports: Sequence[int] = ()


def _tree_layer(root: Path) -> tuple[bytes, str]:
    """A gzipped tar of the tree at ``root`` (owned by root; device nodes left out:
    the runtime provides /dev)."""

    def owned(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
        if info.isdev():
            return None
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        info.mtime = 0
        return info

    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for child in sorted(root.iterdir()):
            tar.add(child, arcname=child.name, recursive=True, filter=owned)
    tar_bytes = raw.getvalue()
    diff_id = "sha256:" + hashlib.sha256(tar_bytes).hexdigest()
    return gzip.compress(tar_bytes, compresslevel=6, mtime=0), diff_id


def _layer(files: Sequence[File]) -> tuple[bytes, str]:
    """A gzipped tar of ``files``; returns it and the digest of the uncompressed tar."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        dirs: set[str] = set()
        for f in files:
            parts = f.path.split("/")[:-1]
            for i in range(1, len(parts) + 1):
                d = "/".join(parts[:i])
                if d not in dirs:
                    dirs.add(d)
                    info = tarfile.TarInfo(d)
                    info.type, info.mode = tarfile.DIRTYPE, 0o755
                    tar.addfile(info)
            data = f.source.read_bytes()
            info = tarfile.TarInfo(f.path)
            info.size, info.mode = len(data), f.mode
            tar.addfile(info, io.BytesIO(data))
    tar_bytes = raw.getvalue()
    diff_id = "sha256:" + hashlib.sha256(tar_bytes).hexdigest()
    return gzip.compress(tar_bytes, mtime=0), diff_id


def _blob(tar: tarfile.TarFile, data: bytes) -> dict[str, Any]:
    digest = hashlib.sha256(data).hexdigest()
    info = tarfile.TarInfo(f"blobs/sha256/{digest}")
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))
    return {"digest": f"sha256:{digest}", "size": len(data)}


def write(image: Image, archive: Path) -> Path:
    """Writes ``image`` as an OCI layout archive at ``archive``."""
    layers = [_tree_layer(tree) for tree in image.trees]
    if image.files:
        layers.append(_layer(image.files))
    runtime: dict[str, Any] = {
        "Entrypoint": list(image.entrypoint),
        "User": image.user,
        "Env": list(image.env),
    }
    if image.cmd:
        runtime["Cmd"] = list(image.cmd)
    if image.ports:
        runtime["ExposedPorts"] = {f"{p}/tcp": {} for p in image.ports}
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": runtime,
        "rootfs": {"type": "layers", "diff_ids": [diff_id for _, diff_id in layers]},
    }
    with tarfile.open(archive, "w") as tar:
        layer_descs = [_blob(tar, data) for data, _ in layers]
        config_desc = _blob(tar, json.dumps(config).encode())
        manifest = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **config_desc},
            "layers": [
                {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", **desc}
                for desc in layer_descs
            ],
        }
        manifest_desc = _blob(tar, json.dumps(manifest).encode())
        index = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [
                {
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    **manifest_desc,
                    "annotations": {
                        "io.containerd.image.name": image.name,
                        "org.opencontainers.image.ref.name": image.name.rsplit(":", 1)[-1],
                    },
                }
            ],
        }
        for name, doc in (
            ("index.json", index),
            ("oci-layout", {"imageLayoutVersion": "1.0.0"}),
        ):
            data = json.dumps(doc).encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return archive
