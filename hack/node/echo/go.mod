module dualstack.dev/hack/node/echo

go 1.26.0
