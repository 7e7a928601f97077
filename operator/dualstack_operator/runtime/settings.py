"""The operator's settings: grouped, frozen, with every default in one place.

The command line fills these; tests build them directly with small intervals.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from dualstack_operator.api.models import Admission
from dualstack_operator.api.names import DEFAULT_NAMESPACE
from dualstack_operator.core.recreation import Unavailable
from dualstack_operator.engine.settings import CacheSettings, PeeringSettings, ReconcileSettings


@dataclass(frozen=True)
class MetricsSettings:
    address: str = ""  # every address of both families: scraped from outside the pod
    port: int = 8080  # 0: no metrics endpoint
    secure: bool = False  # HTTPS, and only for tokens the API server lets get /metrics
    cert_dir: Path | None = None  # tls.crt and tls.key when secure; None: self-signed


@dataclass(frozen=True)
class Settings:
    namespaces: tuple[str, ...] = ()  # empty: every namespace
    reconcile: ReconcileSettings = field(default_factory=ReconcileSettings)
    cache: CacheSettings = field(default_factory=CacheSettings)
    metrics: MetricsSettings = field(default_factory=MetricsSettings)
    peering: PeeringSettings | None = None  # None: standalone, one replica
    admission: Admission | None = None  # None: no admission; the reconciler fixes new Services
    journal_namespace: str = DEFAULT_NAMESPACE  # where recreations are journaled (ConfigMaps)
    liveness_port: int = 8081  # the liveness probe (/healthz), on --metrics-address; 0: none
    # Why primaryFamilyChange: Recreate cannot work here (the preflight's finding): the
    # policies asking for it report this instead. None: it can.
    recreate_unavailable: Unavailable | None = None
