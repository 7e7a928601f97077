"""``make deploy [IMG=...]`` (kubebuilder's convention): the manifests, with the given
image, applied to the current kubeconfig's cluster; ``make undeploy`` removes them.

On the local node cluster the default image is the one ``make image`` loaded into its
containerd; elsewhere, the released one. Components (monitoring, admission, recreate)
are added with ``COMPONENTS="native-admission recreate"``.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from localcluster.paths import REPO, bin_dir

RELEASED = "ghcr.io/dualstack-dev/dualstack-operator"
OVERLAY = REPO / ".local" / "deploy"


def overlay(image: str, components: list[str]) -> Path:
    """A kustomize overlay of manifests/ with ``image`` and the named components."""
    name, _, tag = image.rpartition(":") if ":" in image.rsplit("/", 1)[-1] else (image, "", "")
    unknown = [
        c for c in components if not (REPO / "manifests" / c / "kustomization.yaml").exists()
    ]
    if unknown:
        raise SystemExit(f"make deploy: no such component: {', '.join(unknown)} (see manifests/)")
    OVERLAY.mkdir(parents=True, exist_ok=True)
    doc = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": ["../../manifests"],
        "components": [f"../../manifests/{c}" for c in components],
        "images": [{"name": RELEASED, "newName": name, **({"newTag": tag} if tag else {})}],
    }
    (OVERLAY / "kustomization.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    return OVERLAY


def kubectl() -> str:
    return shutil.which("kubectl") or str(bin_dir(build=True) / "kubectl")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("verb", choices=["deploy", "undeploy", "render"])
    parser.add_argument("--image", default=f"{RELEASED}:0.1.0")
    parser.add_argument("--components", default="", help="space-separated, from manifests/")
    args = parser.parse_args()
    path = overlay(args.image, args.components.split())
    if args.verb == "render":
        return subprocess.run([kubectl(), "kustomize", str(path)], check=False).returncode
    if args.verb == "undeploy":
        argv = [kubectl(), "delete", "-k", str(path), "--ignore-not-found"]
    else:
        argv = [kubectl(), "apply", "--server-side", "--field-manager=make-deploy", "-k", str(path)]
    print(f"{args.verb}: {' '.join(argv[1:])} (image {args.image})", file=sys.stderr)
    return subprocess.run(argv, check=False).returncode


if __name__ == "__main__":
    sys.exit(main())
