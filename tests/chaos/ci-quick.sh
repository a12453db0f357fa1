#!/usr/bin/env bash
# The chaos suite's CI subset, for .ci/run:  bash tests/chaos/ci-quick.sh [BUILD_DIR]
#
# Fault self-test + the quick scenarios (kill leader, minority partition,
# paused leader) against ferryd/ferryctl from BUILD_DIR (default: build).
# Installs the chaos tools if missing (deploy/install-deps.sh --chaos) and
# starts dockerd if none runs. Where docker cannot run here it prints
#   chaos: SKIPPED: dockerd cannot start: <reason>
# and exits 0; otherwise it exits with the suite's status.
set -uo pipefail
src=$(cd "$(dirname "$0")/../.." && pwd)
build=${1:-$src/build}

skip() { echo "chaos: SKIPPED: dockerd cannot start: $*"; exit 0; }

if ! command -v dockerd >/dev/null || ! command -v debootstrap >/dev/null \
   || ! command -v nft >/dev/null || ! command -v tc >/dev/null; then
    if [ "$(id -u)" -ne 0 ]; then
        skip "docker.io/debootstrap/nftables/iproute2 missing and not root to install them"
    fi
    if ! timeout 600 bash "$src/deploy/install-deps.sh" --chaos >&2; then
        skip "installing docker.io, debootstrap, nftables, iproute2 failed"
    fi
fi
command -v nsenter >/dev/null || skip "no nsenter (util-linux)"
if [ ! -x "$build/ferryd" ] || [ ! -x "$build/ferryctl" ]; then
    echo "chaos: $build/ferryd or ferryctl missing: build first" >&2
    exit 1
fi
# The whole quick run is bounded too (image builds included).
exec timeout --kill-after=30 1500 python3 "$src/tests/chaos/chaos.py" \
    --build-dir "$build" --quick --skip-without-docker
