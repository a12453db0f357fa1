#!/usr/bin/env bash
# A start/serve/stop cycle of ferryd --dev is clean under valgrind: no
# invalid accesses, nothing definitely or indirectly lost.
source "$(dirname "$0")/lib.sh"

if ! command -v valgrind >/dev/null; then
    echo "SKIPPED: valgrind is not installed"; exit 0
fi
if nm -an "$FERRYD" 2>/dev/null | grep __asan_init >/dev/null; then  # no -q: with pipefail an early exit SIGPIPEs nm
    echo "SKIPPED: $FERRYD is built with ASan (valgrind runs on the plain build)"; exit 0
fi
PORT=$(free_port)
step "ferryd --dev under valgrind"
DEV_LOG=$WORK/valgrind.log
valgrind --leak-check=full --errors-for-leak-kinds=definite,indirect --error-exitcode=99 \
    --show-leak-kinds=definite,indirect "$FERRYD" --dev --set ports.control="$PORT" --set ports.raft="$(free_port)" >"$DEV_LOG" 2>&1 &
DEV_PID=$!
PIDS+=("$DEV_PID")
wait_for 60 grep -q "is ready" "$DEV_LOG" || fail "agent under valgrind did not become ready"
"$FERRYCTL" --timeout 20000 --json host show >/dev/null || fail "host show failed under valgrind"
"$FERRY_BUILD_DIR/ctl_raw" "$XDG_RUNTIME_DIR/ferry-dev-$(id -u).cred" garbage >/dev/null || fail "garbage request"
kill -TERM "$DEV_PID"
set +e
wait "$DEV_PID"; rc=$?
set -e
grep -E "ERROR SUMMARY|definitely lost|indirectly lost" "$DEV_LOG" || true
[ $rc -eq 0 ] || fail "valgrind reported errors or the agent exited $rc"
echo "PASS $TEST_NAME"
