#!/usr/bin/env bash
# The chaos suite's pure parts, without docker: the invariant checker fails on
# forged breaches and passes a consistent history; the compose file and the
# example configs match the declared topology.
set -euo pipefail
src=${FERRY_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
exec python3 -m unittest discover -s "$src/tests/chaos" -p 'test_*.py' -v
