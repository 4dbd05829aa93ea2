#!/usr/bin/env bash
# Runs the builder benchmark (see main.go): prepares the BuildKit test bed, installs Debian's buildah
# for the comparison rows, then runs the Go harness. Run as root on a quiet machine:
#   hack/bench/builder/run.sh -runs 5 -out docs/performance-builder.md
source "$(dirname "${BASH_SOURCE[0]}")/../../lib.sh"
[ "$(id -u)" = 0 ] || die "run as root (the test bed runs daemons as an unprivileged user)"
"$REPO_ROOT/hack/buildkit/ensure.sh"
apt_install buildah
cd "$REPO_ROOT"
exec go run ./hack/bench/builder "$@"
