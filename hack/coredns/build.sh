#!/usr/bin/env bash
# Builds CoreDNS from its Go module (pinned in go.mod) into the per-user cache: the node
# cluster runs it as kube-dns. Prints the coredns binary's path (hack/gomodule.sh).
name=coredns module=github.com/coredns/coredns package=github.com/coredns/coredns check=-version
source "$(dirname "${BASH_SOURCE[0]}")/../gomodule.sh"
