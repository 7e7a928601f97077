"""The operator's own Service cache against the real API server: its watch survives an
API server restart and a 410 Gone (history compacted), and misses no change made while
it was not watching."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from localcluster import REPO, LocalCluster
from localcluster.audit import service_patches
from support.kube import Kubectl, dsp, families, service, status_when, wait_for
from support.operator_proc import OperatorProcess

StartOperator = Callable[..., OperatorProcess]


@pytest.fixture
def own_cluster(tmp_path: Path, binaries: Path) -> Iterator[tuple[LocalCluster, Kubectl]]:
    """A cluster of this test's own: it restarts the API server and compacts etcd."""
    cluster = LocalCluster(tmp_path / "cluster", ("ipv4", "ipv6"), binaries)
    cluster.start(die_with_parent=True)
    try:
        k = Kubectl(binaries / "kubectl", cluster.kubeconfig)
        k.run("apply", "-f", str(REPO / "crds" / "dualstackpolicy.yaml"))
        k.run("create", "namespace", "shop")
        yield cluster, k.in_namespace("shop")
    finally:
        cluster.stop()


def converged_shop(
    cluster: LocalCluster, shop: Kubectl, start_operator: StartOperator
) -> OperatorProcess:
    for name in ("keep", "edit", "gone"):
        shop.create(service(name, selector={"app": name}))
    operator = start_operator(cluster, shop)
    shop.create(dsp(ipFamilyPolicy="PreferDualStack"))
    status_when(shop, lambda s: s.get("compliantServices") == 3)
    return operator


def change_while_not_watching(shop: Kubectl) -> None:
    """Someone drifts one Service, deletes one and adds one."""
    shop.patch("service", "edit", {"spec": {"ipFamilyPolicy": "SingleStack"}})
    assert families(shop, "edit") == ("SingleStack", ["IPv4"])
    shop.run("delete", "service", "gone")
    shop.create(service("new", selector={"app": "new"}))


def healed(shop: Kubectl, cluster: LocalCluster) -> None:
    # The status before the changes also read 3 of 3: wait on the Services themselves.
    dual = ("PreferDualStack", ["IPv4", "IPv6"])
    wait_for(
        "every Service, old and new, remediated",
        lambda: all(families(shop, n) == dual for n in ("keep", "edit", "new")),
        timeout=90,
    )
    status = status_when(shop, lambda s: s.get("matchedServices") == 3)
    assert (status["compliantServices"], status["driftedServices"]) == (3, 0)
    patches = service_patches(cluster.audit.writes("shop"))
    assert patches == {"keep": 1, "edit": 2, "gone": 1, "new": 1}, "one write per drift"


def test_a_restarted_api_server_drops_the_watch_and_no_change_is_missed(
    own_cluster: tuple[LocalCluster, Kubectl], start_operator: StartOperator
) -> None:
    cluster, shop = own_cluster
    operator = converged_shop(cluster, shop, start_operator)
    operator.pause()  # not watching while the server restarts and things change
    try:
        cluster.restart_apiserver()
        change_while_not_watching(shop)
    finally:
        operator.resume()
    healed(shop, cluster)
    assert "Services in namespace shop:" in operator.log(), "the watch really broke"
    assert operator.proc is not None
    assert operator.proc.alive()
    assert "Traceback" not in operator.log()


def test_history_compacted_away_gives_410_and_a_relist_misses_nothing(
    own_cluster: tuple[LocalCluster, Kubectl], start_operator: StartOperator
) -> None:
    cluster, shop = own_cluster
    operator = converged_shop(cluster, shop, start_operator)
    operator.pause()
    try:
        cluster.restart_apiserver()  # drops the watch ...
        change_while_not_watching(shop)
        cluster.compact_etcd()  # ... and the history it would resume from is gone
    finally:
        operator.resume()
    wait_for("the operator to relist after 410", lambda: "listing afresh" in operator.log())
    healed(shop, cluster)
    assert "Traceback" not in operator.log()
