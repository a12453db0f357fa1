#!/usr/bin/env bash
# VMs end to end: a real `ferryd --dev` runs KVM guests through the Raft FSM,
# driven by a real `ferryctl`. Creates idle and web VMs, watches them
# heartbeat, reads their consoles, refuses bad input without leaving
# anything behind, resets a guest that stops heartbeating (and not one that
# never heartbeats), then stops and deletes everything.
#
# This machine's KVM may be a software hypervisor, ~1000x slower than
# hardware: small VMs, and every wait polls for its condition.
source "$(dirname "$0")/lib.sh"

if ! (exec 3<>/dev/kvm) 2>/dev/null; then
    echo "SKIPPED: no /dev/kvm - $TEST_NAME needs KVM to run VMs"
    exit 0
fi

HB_TIMEOUT_S=4
step "start ferryd --dev with 256 MiB of capacity and a ${HB_TIMEOUT_S}s VM heartbeat timeout"
start_dev_agent --set capacity.memory=256M --set agent.vm_heartbeat_timeout=${HB_TIMEOUT_S}s
STATE_DIR=$(sed -n 's/^  state dir *\([^ ]*\).*/\1/p' "$DEV_LOG")
[ -d "$STATE_DIR" ] || fail "could not find the dev state dir in the log"

ctl() { "$FERRYCTL" "$@"; }
# show NAME: vm show --json into $WORK/show-NAME.json
show() { ctl --json vm show "$1" >"$WORK/show-$1.json"; }
sfield() { json_get "$WORK/show-$1.json" "$2"; }
names() { ctl --json vm list | python3 -c 'import json,sys; print(" ".join(sorted(v["name"] for v in json.load(sys.stdin)["vms"])))'; }
count_events() {  # count_events VM KIND
    ctl --json vm events "$1" | python3 -c 'import json,sys; print(sum(1 for e in json.load(sys.stdin)["events"] if e["kind"] == sys.argv[1]))' "$2"
}
running_with_heartbeats() { show "$1" && [ "$(sfield "$1" 'd["running_here"] and d["heartbeats"] > 0')" = True ]; }
heartbeats_above() { show "$1" && [ "$(sfield "$1" "d['heartbeats'] > $2")" = True ]; }
console_has() { ctl vm console "$1" --bytes 1M | grep -q -- "$2"; }
show_true() { show "$1" && [ "$(sfield "$1" "$2")" = True ]; }
resets_reach() { [ "$(count_events "$1" heartbeat-reset)" -ge "$2" ] && [ "$(count_events "$1" monitor-gave-up)" -ge 1 ]; }

# refused WHAT EXPECTED-TEXT COMMAND...: exits 1, one line on stderr naming the problem.
refused() {
    local what=$1 expected=$2 rc; shift 2
    set +e
    "$FERRYCTL" "$@" >"$WORK/refused.out" 2>"$WORK/refused.err"; rc=$?
    set -e
    [ $rc -eq 1 ] || fail "$what: expected exit 1, got $rc: $(cat "$WORK/refused.err")"
    [ "$(wc -l <"$WORK/refused.err")" -eq 1 ] || fail "$what: not one line: $(cat "$WORK/refused.err")"
    grep -q -- "$expected" "$WORK/refused.err" || fail "$what: '$expected' not in: $(cat "$WORK/refused.err")"
    echo "   refused ($what): $(cat "$WORK/refused.err")"
}

step "host show names the VM backend"
ctl --json host show >"$WORK/host.json"
[ "$(json_get "$WORK/host.json" 'd["vm_backend"]')" = kvm ] || fail "vm_backend is not kvm: $(cat "$WORK/host.json")"
[ "$(names)" = "" ] || fail "a new dev cluster lists VMs: $(names)"

step "create and start an idle VM and a web VM (64 MiB each)"
wait_for 30 ctl vm create idle1 --memory 64M --vcpus 1 --profile idle --start \
    || fail "vm create idle1 failed: $(ctl vm create idle1 --memory 64M --start 2>&1)"
ctl --json vm create web1 --memory 64M --profile web:hot=16M,rate=8M >"$WORK/create-web1.json"
[ "$(json_get "$WORK/create-web1.json" 'd["power_state"]')" = off ] || fail "a VM created without --start is on"
wait_for 60 running_with_heartbeats idle1 || fail "idle1 does not run or heartbeat: $(cat "$WORK/show-idle1.json")"
# With the lease held, start answers once the VM runs here.
ctl --json vm start web1 >"$WORK/start-web1.json"
[ "$(json_get "$WORK/start-web1.json" 'd["running_here"]')" = True ] || fail "vm start web1: $(cat "$WORK/start-web1.json")"

step "vm list --json has the agreed shape"
ctl --json vm list >"$WORK/list.json"
python3 - "$WORK/list.json" <<'PY' || fail "vm list --json shape: $(cat "$WORK/list.json")"
import json, sys
d = json.load(open(sys.argv[1]))
want = {"name": str, "owner": str, "power_state": str, "running_here": bool, "memory_bytes": int,
        "vcpus": int, "profile": str, "generation": int}
vms = {v["name"]: v for v in d["vms"]}
assert set(vms) == {"idle1", "web1"}, vms
for v in vms.values():
    for key, kind in want.items():
        assert isinstance(v[key], kind), (key, v)
    assert v["power_state"] == "on" and v["running_here"] is True and v["memory_bytes"] == 64 << 20, v
    assert v["owner"] == d["host"] and v["generation"] == 1 and v["vcpus"] == 1, v
assert vms["web1"]["profile"] == "web:hot=16M,rate=8M", vms["web1"]
PY
ctl --json vm list --linearizable >"$WORK/list-lin.json" || fail "vm list --linearizable failed"
[ "$(json_get "$WORK/list-lin.json" 'len(d["vms"])')" = 2 ] || fail "linearizable list differs"

step "heartbeats rise; the consoles show the guests' output"
show idle1
hb=$(sfield idle1 'd["heartbeats"]')
wait_for 60 heartbeats_above idle1 "$hb" || fail "idle1 heartbeats stay at $hb"
wait_for 60 console_has idle1 "ferry-guest: profile=idle" || fail "idle1 console: $(ctl vm console idle1 | tail -3)"
wait_for 60 console_has web1 "ferry-guest: profile=web" || fail "web1 console: $(ctl vm console web1 | tail -3)"
ctl vm console web1 --bytes 300 | grep -q "ferry-guest" || fail "a console tail lacks guest lines"
ctl --json vm console web1 >"$WORK/console.json"
[ "$(json_get "$WORK/console.json" 'd["cursor"] > 0 and "ferry-guest" in d["data"]')" = True ] \
    || fail "vm console --json: $(head -c 300 "$WORK/console.json")"

step "the web VM is measured: CPU, dirty pages, an active set"
wait_for 60 show_true web1 'd["cpu_percent"] > 0 and d["dirty_pages_per_s"] > 0 and d["dirty_tracking"]' \
    || fail "web1 shows no CPU or dirty rate: $(cat "$WORK/show-web1.json")"
wait_for 90 show_true web1 'd["active_set_valid"] and 0 < d["active_set_bytes"] <= 64 << 20' \
    || fail "web1 has no active set: $(cat "$WORK/show-web1.json")"

step "bad input is refused with one clear line and leaves nothing behind"
before=$(names)
refused "unknown profile" "unknown profile 'bogus'" vm create bad1 --memory 64M --profile bogus:hot=1M
refused "absurd memory" "memory 100 TiB is out of range" vm create bad2 --memory 100T
refused "duplicate name" "'idle1' exists already" vm create idle1 --memory 64M
refused "too little host memory" "too little memory" vm create bad3 --memory 192M
refused "profile too big for its memory" "hot set larger" vm create bad4 --memory 64M --profile web
refused "unknown host" "no host named 'nohost'" vm create bad5 --memory 64M --host nohost
refused "delete while on" "stop it first" vm delete idle1
refused "unknown VM" "no VM named 'nosuch'" vm start nosuch
[ "$(names)" = "$before" ] || fail "refused creates changed the VM list: '$before' -> '$(names)'"
for bad in bad1 bad2 bad3 bad4 bad5; do
    [ ! -e "$STATE_DIR/vms/$bad" ] || fail "a refused create left $STATE_DIR/vms/$bad behind"
done
set +e
ctl vm create >/dev/null 2>"$WORK/usage.err"; rc=$?
set -e
[ $rc -eq 2 ] || fail "vm create without arguments should exit 2, got $rc"

step "monitoring: a guest that stops heartbeating is reset (at most 3 times); a silent one is not"
# Two tiny Multiboot kernels: one heartbeats 3 times then hangs, one never heartbeats.
for hbs in 3 0; do
    gcc -m32 -c -DHEARTBEATS=$hbs "$FERRY_SOURCE_DIR/tests/integration/hang_kernel.S" -o "$WORK/hang$hbs.o"
    ld -m elf_i386 -N --build-id=none -Ttext=0x100000 -e _start --no-warn-rwx-segments \
        -o "$WORK/hang$hbs.elf" "$WORK/hang$hbs.o" 2>/dev/null \
        || ld -m elf_i386 -N --build-id=none -Ttext=0x100000 -e _start -o "$WORK/hang$hbs.elf" "$WORK/hang$hbs.o"
done
ctl vm create hang --memory 32M --kernel "$WORK/hang3.elf" --start >/dev/null
ctl vm create silent --memory 32M --kernel "$WORK/hang0.elf" --start >/dev/null
wait_for 30 console_has silent "hang-kernel: no more heartbeats" || fail "the silent kernel did not boot"
wait_for 120 resets_reach hang 3 || fail "hang was not reset 3 times: $(ctl vm events hang)"
[ "$(count_events hang heartbeat-reset)" -eq 3 ] || fail "hang was reset more than 3 times: $(ctl vm events hang)"
[ "$(ctl vm console hang --bytes 1M | grep -c 'hang-kernel: booted')" -eq 4 ] \
    || fail "hang should have booted 4 times: $(ctl vm console hang)"
show hang
[ "$(sfield hang 'd["monitor_resets"] == 3 and d["monitor_gave_up"]')" = True ] || fail "vm show hang: $(cat "$WORK/show-hang.json")"
# By now the silent guest has run several timeouts long: it was never reset,
# and neither were the healthy guests.
for vm in silent idle1 web1; do
    [ "$(count_events $vm heartbeat-reset)" -eq 0 ] || fail "$vm was reset by the monitor: $(ctl vm events $vm)"
done
show silent
[ "$(sfield silent 'd["running_here"] and d["heartbeats"] == 0')" = True ] || fail "silent: $(cat "$WORK/show-silent.json")"
ctl vm show hang | grep -q "heartbeat-reset" || fail "vm show does not list the reset events"

step "an administrator's reset power-cycles the guest"
boots() { ctl vm console "$1" --bytes 1M | grep -c "ferry-guest: booting" || true; }
boots_above() { [ "$(boots "$1")" -gt "$2" ]; }
boots_before=$(boots idle1)
show idle1
counter_before=$(sfield idle1 'd["heartbeat_counter"]')
ctl vm reset idle1 | grep -q "reset" || fail "vm reset idle1 said nothing"
[ "$(count_events idle1 reset)" -eq 1 ] || fail "the reset is not an event"
wait_for 60 boots_above idle1 "$boots_before" || fail "idle1 did not reboot"
# The guest's own counter starts again from 1 after the reboot.
wait_for 60 show_true idle1 "d['running_here'] and d['guest_status'] == 'running' and 0 < d['heartbeat_counter'] < $counter_before" \
    || fail "idle1 does not heartbeat afresh after its reset: $(cat "$WORK/show-idle1.json")"

step "stop answers with the VM stopped; delete removes it and its folder"
ctl --json vm stop web1 >"$WORK/stop.json"
[ "$(json_get "$WORK/stop.json" 'd["power_state"] == "off" and not d["running_here"]')" = True ] \
    || fail "vm stop web1: $(cat "$WORK/stop.json")"
show web1
[ "$(sfield web1 'd["running_here"] or d["runtime_state"] != ""')" = False ] || fail "web1 still runs: $(cat "$WORK/show-web1.json")"
refused "reset while off" "is powered off" vm reset web1
[ -d "$STATE_DIR/vms/web1" ] || fail "a stopped VM's console log went away"
ctl vm delete web1 >/dev/null
[ ! -e "$STATE_DIR/vms/web1" ] || fail "vm delete left $STATE_DIR/vms/web1 behind"
for vm in idle1 hang silent; do
    ctl vm stop $vm >/dev/null
    ctl vm delete $vm >/dev/null
done
[ "$(names)" = "" ] || fail "VMs left after deleting all: $(names)"
[ "$(count_events web1 stopped)" -ge 1 ] && [ "$(count_events web1 deleted)" -eq 1 ] || fail "stop/delete events missing"

step "SIGTERM stops the agent cleanly"
kill -TERM "$DEV_PID"
set +e
wait "$DEV_PID"; rc=$?
set -e
[ $rc -eq 0 ] || fail "ferryd exited $rc on SIGTERM"
echo "PASS $TEST_NAME"
