#!/usr/bin/env bash
# The foundation end to end: a real `ferryd --dev` and a real `ferryctl`.
source "$(dirname "$0")/lib.sh"

PORT=$(free_port)
step "start ferryd --dev on 127.0.0.1:$PORT"
start_dev_agent --set ports.control="$PORT" --name devhost
CRED=$XDG_RUNTIME_DIR/ferry-dev-$(id -u).cred
[ -L "$CRED" ] || fail "the dev agent did not publish its credential at $CRED"

step "ferryctl finds the dev agent without flags"
"$FERRYCTL" host show >"$WORK/show.txt" || fail "ferryctl host show failed"
grep -q "devhost" "$WORK/show.txt" || fail "table output lacks the agent name"

step "ferryctl --json host show matches this machine"
"$FERRYCTL" --json host show >"$WORK/show.json" || fail "ferryctl --json host show failed"
cpus=$(json_get "$WORK/show.json" 'd["inventory"]["cpus"]')
[ "$cpus" = "$(nproc --all)" ] || [ "$cpus" = "$(nproc)" ] || fail "cpus $cpus, machine has $(nproc)"
mem=$(json_get "$WORK/show.json" 'd["inventory"]["memory_bytes"]')
mem_kib=$(awk '/^MemTotal:/ {print $2}' /proc/meminfo)
[ "$mem" = "$((mem_kib * 1024))" ] || fail "memory_bytes $mem, /proc/meminfo says $((mem_kib * 1024))"
want_ifaces=$(ls /sys/class/net | sort | tr '\n' ' ')
got_ifaces=$(json_get "$WORK/show.json" '" ".join(sorted(i["name"] for i in d["inventory"]["interfaces"]))')
[ "$got_ifaces " = "$want_ifaces" ] || fail "interfaces '$got_ifaces', machine has '$want_ifaces'"
mgmt=$(json_get "$WORK/show.json" '",".join(i["name"] for i in d["inventory"]["interfaces"] if "management" in i["services"])')
[ "$mgmt" = "lo" ] || fail "management should be on lo (the dev agent binds 127.0.0.1), got '$mgmt'"

step "a wrong client key is refused with a clear message"
# Another cluster's admin keypair: well formed, but unknown to this agent.
"$FERRYD" init --cluster other --state-dir "$WORK/other" >/dev/null
{ grep -v '^client_' "$CRED"; grep '^client_' "$WORK/other/admin.cred"; } >"$WORK/wrong.cred"
chmod 600 "$WORK/wrong.cred"
set +e
"$FERRYCTL" --cred "$WORK/wrong.cred" host show 2>"$WORK/wrong.err"; rc=$?
set -e
[ $rc -eq 4 ] || fail "a wrong key should exit 4, got $rc: $(cat "$WORK/wrong.err")"
grep -q "rejected" "$WORK/wrong.err" || fail "no clear message for a wrong key: $(cat "$WORK/wrong.err")"
[ "$(wc -l <"$WORK/wrong.err")" -eq 1 ] || fail "the error should be one line: $(cat "$WORK/wrong.err")"
wait_for 5 grep -q "rejected control client" "$DEV_LOG" || fail "the agent did not log the rejected key"

step "a group-readable credential is refused"
cp "$CRED" "$WORK/open.cred"; chmod 644 "$WORK/open.cred"
set +e
"$FERRYCTL" --cred "$WORK/open.cred" host show 2>"$WORK/open.err"; rc=$?
set -e
[ $rc -eq 2 ] && grep -q "chmod 600" "$WORK/open.err" || fail "mode 0644 credential: rc $rc, $(cat "$WORK/open.err")"

step "garbage on the control port does not stop the agent"
python3 - "$PORT" <<'PY'
import socket, sys
for payload in (b"\x00" * 64, b"GET / HTTP/1.0\r\n\r\n", bytes(range(256)) * 4):
    s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=2)
    try:
        s.sendall(payload)
        s.recv(64)
    except OSError:
        pass
    s.close()
PY
for kind in garbage truncated badtype nocommand; do
    "$FERRY_BUILD_DIR/ctl_raw" "$CRED" "$kind" >"$WORK/raw-$kind.txt" || fail "malformed request '$kind' got no error reply"
done
grep -q "malformed request" "$WORK/raw-garbage.txt" || fail "garbage reply is not clear: $(cat "$WORK/raw-garbage.txt")"
"$FERRYCTL" --json host show >/dev/null || fail "the agent stopped answering after garbage"

step "unknown command and unreachable agent are clear failures"
set +e
"$FERRYCTL" host frobnicate 2>"$WORK/unknown.err"; rc=$?
[ $rc -eq 2 ] || fail "unknown command should exit 2, got $rc"
"$FERRYCTL" -a 127.0.0.1:"$(free_port)" host show 2>"$WORK/unreach.err"; rc=$?
set -e
[ $rc -eq 3 ] && grep -q "cannot reach" "$WORK/unreach.err" || fail "unreachable: rc $rc, $(cat "$WORK/unreach.err")"

step "SIGTERM stops the agent cleanly"
STATE_DIR=$(sed -n 's/^  state dir *\([^ ]*\).*/\1/p' "$DEV_LOG")
[ -d "$STATE_DIR" ] || fail "could not find the dev state dir in the log"
kill -TERM "$DEV_PID"
set +e
wait "$DEV_PID"; rc=$?
set -e
[ $rc -eq 0 ] || fail "ferryd exited $rc on SIGTERM"
[ ! -e "$STATE_DIR" ] || fail "the dev state dir $STATE_DIR was left behind"
[ ! -e "$CRED" ] || fail "the dev credential link was left behind"
echo "PASS $TEST_NAME"
