#!/usr/bin/env bash
# bench/membership/run.sh BUILD_DIR: prints one JSON object (see bench_membership.c).
# Builds the memberlist peer first (GOPATH mode against Debian's packages:
# golang-go, golang-github-hashicorp-memberlist-dev); without Go its rows
# say "skipped".
set -euo pipefail
build=$(cd "${1:-build}" 2>/dev/null && pwd || echo "${1:-build}")
shift || true
here=$(cd "$(dirname "$0")" && pwd)
exe="$build/bench/membership/bench_membership"
if [ ! -x "$exe" ]; then
    echo "bench membership: $exe not built (make -C $build bench_membership)" >&2
    echo '{"bench": "membership", "rows": [{"case": "all", "skipped": "bench_membership not built"}]}'
    exit 0
fi
peer="$build/bench/membership/memberlist_peer"
src="$here/../peers/memberlist/main.go"
if command -v go >/dev/null && [ -d /usr/share/gocode/src/github.com/hashicorp/memberlist ]; then
    if [ ! -x "$peer" ] || [ "$src" -nt "$peer" ]; then
        echo "bench membership: building the memberlist peer" >&2
        mkdir -p "$build/bench/membership/gocache"
        (cd "$(dirname "$src")" && GO111MODULE=off GOPATH=/usr/share/gocode \
            GOCACHE="$build/bench/membership/gocache" go build -o "$peer" main.go) >&2 || true
    fi
else
    echo "bench membership: go or memberlist missing; apt-get install golang-go golang-github-hashicorp-memberlist-dev" >&2
fi
exec "$exe" --peer "$peer" "$@"
