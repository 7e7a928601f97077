"""The engine's knobs: grouped, frozen, every default in one place (the command line
reads them from here; tests build them with small intervals)."""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_REJECT_BACKOFF = (10.0, 30.0, 60.0, 120.0, 300.0)


@dataclass(frozen=True)
class ReconcileSettings:
    coalesce_seconds: float = 0.3  # events closer than this share one pass
    resync_seconds: float = 300.0  # a full pass even without events: a missed event heals
    cluster_recheck_seconds: float = 60.0  # how often the cluster's families are re-detected
    write_concurrency: int = 16  # Service patches in flight across all namespaces
    reject_backoff: tuple[float, ...] = DEFAULT_REJECT_BACKOFF  # after a 422: wait, then retry
    error_retry_seconds: float = 5.0  # a pass that failed (a restarting server) is retried
    revert_limit: int = 3  # writes to one Service within the window before giving up on it
    revert_window_seconds: float = 600.0


@dataclass(frozen=True)
class CacheSettings:
    page_size: int = 500  # Services per list page
    watch_timeout_seconds: int = 300  # the server ends a watch after this; we resume it

    @property
    def watch_silence_seconds(self) -> int:
        """A watch silent this long is dead (a stalled connection, a partition): the
        client drops it and resumes, even if the server never ends it."""
        return self.watch_timeout_seconds + min(30, self.watch_timeout_seconds)

    retry_seconds: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0, 8.0)  # after a failed list or watch


@dataclass(frozen=True)
class PeeringSettings:
    name: str  # the (Cluster)KopfPeering object replicas meet in
    identity: str
    priority: int
    lifetime: int = 60  # a silent peer counts as gone after this: the takeover bound
    check_seconds: float = 1.0  # how long one reading of the peering object is trusted
