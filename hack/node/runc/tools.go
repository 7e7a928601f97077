//go:build tools

// Package tools pins runc for containerd 2 (Debian's runc 1.1 cannot start its
// containers: "can't get final child's PID from pipe: EOF"). Built with cgo and
// libseccomp, so that RuntimeDefault seccomp profiles apply. Never compiled itself.
package tools

import _ "github.com/opencontainers/runc"
