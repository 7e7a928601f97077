"""The shipped CRDs are what the models generate (pure: no API server)."""

from __future__ import annotations

from dualstack_operator.api.crd import KINDS, render
from localcluster import REPO


def test_crd_file_matches_the_models() -> None:
    for kind in KINDS:
        shipped = (REPO / "crds" / kind.file).read_text()
        assert shipped == render(kind), f"crds/{kind.file} is stale: run `make crds`"
