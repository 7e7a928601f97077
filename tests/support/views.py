"""Views built as the operator builds them, from the bodies the API server would send."""

from __future__ import annotations

from typing import Any

from dualstack_operator.core.views import PolicyView


def policy_view(
    name: str = "p",
    namespace: str = "ns",
    created: str = "2026-01-01T00:00:00Z",
    generation: int = 1,
    **spec: Any,
) -> PolicyView:
    """A DualStackPolicy as the operator sees it."""
    return PolicyView.from_body(
        {
            "metadata": {
                "name": name,
                "namespace": namespace,
                "uid": f"uid-{namespace}-{name}",
                "generation": generation,
                "creationTimestamp": created,
            },
            "spec": spec,
        }
    )
