#!/usr/bin/env bash
# test_vmm_qemu.sh - the workload kernel boots under QEMU's own Multiboot
# loader (-kernel), the same file the ferry VMM boots, and says so on its
# serial console: a clean status line after a full self-check sweep, and a
# clear error for a bad command line. Prints "SKIPPED: no qemu" without QEMU.
set -u

build=${FERRY_BUILD_DIR:-build}
image=$build/guest/ferry-guest.elf
deadline_s=${QEMU_WAIT_S:-120}

if ! command -v qemu-system-x86_64 > /dev/null; then
    echo "SKIPPED: no qemu (apt-get install qemu-system-x86)"
    exit 0
fi
if [ ! -f "$image" ]; then
    echo "FAIL: no guest image at $image"
    exit 1
fi

if [ -w /dev/kvm ]; then
    accel=(-enable-kvm)
    # QEMU 7.2 cannot set IA32_ARCH_CAPABILITIES on some newer host kernels
    # and aborts at once; the second model leaves that MSR out.
    cpu_models=("host" "host,-arch-capabilities")
else
    echo "note: no /dev/kvm, using QEMU's TCG"
    accel=(-accel tcg)
    cpu_models=("max")
fi

workdir=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2> /dev/null; done
    wait 2> /dev/null
    rm -rf "$workdir"
}
trap cleanup EXIT

# start NAME CPU APPEND: boots QEMU in the background, serial to NAME.log.
# The subshell reaps QEMU itself, so that a QEMU abort is not reported here.
start() {
    (
        qemu-system-x86_64 "${accel[@]}" -cpu "$2" -m 128 -smp 1 -no-reboot -net none \
            -display none -monitor none -serial "file:$workdir/$1.log" \
            -kernel "$image" -append "$3" > "$workdir/$1.qemu" 2>&1 &
        echo $! > "$workdir/$1.pid"
        wait $! 2> /dev/null
        true
    ) &
    while [ ! -s "$workdir/$1.pid" ]; do sleep 0.05; done
    pids+=("$(cat "$workdir/$1.pid")")
}

# wait_for NAME REGEX: polls the serial log until REGEX shows up, QEMU
# exits, or the deadline passes.
wait_for() {
    local end=$((SECONDS + deadline_s)) pid
    pid=$(cat "$workdir/$1.pid")
    while [ $SECONDS -lt $end ]; do
        if grep -Eq "$2" "$workdir/$1.log" 2> /dev/null; then
            return 0
        fi
        if ! kill -0 "$pid" 2> /dev/null; then
            return 2
        fi
        sleep 0.2
    done
    return 1
}

# Pick the first CPU model QEMU accepts on this host.
cpu=""
for model in "${cpu_models[@]}"; do
    start probe "$model" "profile=idle print=0"
    if wait_for probe "ferry-guest: booting"; then
        cpu=$model
        kill "$(cat "$workdir/probe.pid")" 2> /dev/null
        break
    fi
    kill "$(cat "$workdir/probe.pid")" 2> /dev/null
done
if [ -z "$cpu" ]; then
    echo "FAIL: QEMU did not boot the guest with any of: ${cpu_models[*]}"
    cat "$workdir"/probe.qemu "$workdir"/probe.log 2> /dev/null | tail -20
    exit 1
fi
echo "QEMU $(qemu-system-x86_64 --version | head -1 | awk '{print $4}') -cpu $cpu"

start good "$cpu" "profile=db wss=4M rate=1M print=500"
start bad "$cpu" "profile=bogus"

fail=0
if wait_for good "status=running written=[1-9][0-9]* verified=[1-9][0-9]* errors=0 sweeps=[1-9]"; then
    echo "ok: db profile ran, a full sweep verified its pages, no errors"
else
    echo "FAIL: no clean status line after a sweep"
    fail=1
fi
grep -q "profile=db memory=" "$workdir/good.log" || { echo "FAIL: no profile line"; fail=1; }
if wait_for bad "error: cmdline: unknown profile 'bogus'"; then
    echo "ok: bad command line refused on the console"
else
    echo "FAIL: no error for an unknown profile"
    fail=1
fi

if [ $fail -ne 0 ]; then
    for name in good bad; do
        echo "--- $name serial:"
        tr -d '\r' < "$workdir/$name.log" | tail -15
        echo "--- $name qemu:"
        tail -5 "$workdir/$name.qemu"
    done
fi
exit $fail
