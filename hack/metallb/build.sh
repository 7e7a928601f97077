#!/usr/bin/env bash
# Builds MetalLB's controller from its Go module (pinned in go.mod) into the per-user
# cache: run out of cluster, it assigns LoadBalancer Services their addresses from
# IPAddressPools (no speaker). Prints the binary's path (hack/gomodule.sh).
# v0.15.2, not v0.16.2: v0.16.2 needs github.com/metallb/frr-k8s v0.0.27, whose source
# the module proxy does not serve (403), and no frr-k8s it serves (<= v0.0.21) builds it.
name=metallb-controller module=go.universe.tf/metallb package=go.universe.tf/metallb/controller check=-help
source "$(dirname "${BASH_SOURCE[0]}")/../gomodule.sh"
