"""Self-test of the fault primitives, without ferryd.

Three containers run a heartbeat (they rewrite /tmp/tick ten times a
second) on the cluster's three networks. Each check injects one fault and
proves it took effect, then heals it and proves the heal: a fault that
silently does nothing would make every scenario pass for nothing.
"""

import time

from cluster import wait_for
from report import FAIL, PASS, SKIP, Row

PROBES = 5            # connects per reachability probe
LOSS_PERCENT = 30     # high enough to measure with 100 probes
LOSS_PROBES = 100
RATE_MBIT = 8


def reachable(c, src, dst, service):
    r = c.probe_connect(src, dst, service, count=PROBES, timeout=0.5)
    return r["answered"] == PROBES


def cut(c, src, dst, service):
    r = c.probe_connect(src, dst, service, count=3, timeout=0.3)
    return r["answered"] == 0


def expect(cond, what):
    if not cond:
        raise AssertionError(what)


def tick_advances(c, node, timeout=10):
    before = c.read_tick(node)
    wait_for(f"{node} heartbeat advances", lambda: c.read_tick(node) not in ("", before), timeout)


def check_kill(c):
    n = c.nodes[1]
    t0 = time.monotonic()
    c.kill(n)
    code = c.inspect(n, "{{.State.ExitCode}}")
    expect(code == "137", f"{n} exit code {code}, expected 137 (SIGKILL)")
    c.start(n)
    tick_advances(c, n)
    return f"exit 137; back in {time.monotonic() - t0:.1f}s"


def check_pause(c):
    n = c.nodes[1]
    c.pause(n)
    try:
        expect(c.paused(n), f"docker does not report {n} paused")
        frozen = c.read_tick(n)
        # a negative check needs a window: 10 heartbeats would fall in it
        for _ in range(5):
            time.sleep(0.2)
            expect(c.read_tick(n) == frozen, f"{n} heartbeat moved while paused")
    finally:
        c.unpause(n)
    tick_advances(c, n)
    return "heartbeat frozen 1s, resumed"


def check_disconnect_one(c):
    a, b = c.nodes[0], c.nodes[1]
    expect(reachable(c, a, b, "vmotion"), "vmotion unreachable before the fault")
    old_dev = c.interface_for(b, "vmotion")
    c.disconnect(b, {"vmotion"})
    try:
        expect(cut(c, a, b, "vmotion"), "vmotion still reachable after disconnect")
        expect(reachable(c, a, b, "management"), "management lost with vmotion")
    finally:
        c.connect(b, {"vmotion"})
    wait_for("vmotion back", lambda: reachable(c, a, b, "vmotion"), 20, interval=0.5)
    new_dev = c.interface_for(b, "vmotion")
    return f"vmotion cut, management up; {old_dev} came back as {new_dev}"


def check_disconnect_all(c):
    a, b = c.nodes[0], c.nodes[1]
    services = list(b.addresses)
    c.disconnect(b)
    try:
        for s in services:
            expect(cut(c, a, b, s), f"{s} still reachable after disconnecting all")
    finally:
        c.connect(b)
    for s in services:
        wait_for(f"{s} back", lambda s=s: reachable(c, a, b, s), 20, interval=0.5)
    return "3 networks cut, all back"


def check_partition(c):
    a, b, d = c.nodes[0], c.nodes[1], c.nodes[2]
    c.partition([[a], [b, d]])
    try:
        for s in a.addresses:
            expect(cut(c, a, b, s), f"{a}->{b} {s} not cut")
            expect(cut(c, d, a, s), f"{d}->{a} {s} not cut")
        expect(reachable(c, b, d, "management"), "majority side cut from itself")
    finally:
        c.heal_partition()
    expect(reachable(c, a, b, "management"), "partition did not heal")
    return f"{{{a}}} | {{{b}, {d}}} on 3 networks, healed"


def check_loss(c):
    a, b = c.nodes[0], c.nodes[1]
    c.set_loss([b], LOSS_PERCENT)
    try:
        r = c.probe_connect(a, b, "management", count=LOSS_PROBES, timeout=0.3)
    finally:
        c.clear_loss([b])
    lost = r["timed_out"] / LOSS_PROBES
    # 100 draws at p=0.3: 30 +- 4.6; [10, 55] is > 4 sigma either side
    expect(0.10 <= lost <= 0.55, f"{lost:.0%} of probes lost with {LOSS_PERCENT}% loss set ({r})")
    after = c.probe_connect(a, b, "management", count=20, timeout=1.0)
    expect(after["answered"] == 20, f"loss did not clear: {after}")
    return f"{lost:.0%} lost with {LOSS_PERCENT}% set, 0/20 after"


def check_bandwidth(c):
    a, b = c.nodes[0], c.nodes[1]
    free = c.measure_throughput(b, a, "vmotion", 20_000_000)
    c.limit_bandwidth([b], f"{RATE_MBIT}mbit", {"vmotion"})
    try:
        limited = c.measure_throughput(b, a, "vmotion", RATE_MBIT * 1_000_000 // 8 * 2)
    finally:
        c.clear_bandwidth([b])
    # a token bucket cannot pass more than its rate (plus one 32 kbit burst)
    expect(limited <= RATE_MBIT * 1.25, f"{limited:.1f} Mbit/s through a {RATE_MBIT} Mbit/s bucket")
    expect(free >= 4 * limited, f"unlimited {free:.0f} Mbit/s is not above the limit")
    return f"{limited:.1f} Mbit/s under {RATE_MBIT}mbit tbf, {free:.0f} free"


def check_kvm(c):
    if not c.kvm:
        return None
    r = c.exec(c.nodes[0], "test", "-c", "/dev/kvm")
    expect(r.returncode == 0, "/dev/kvm not visible in the container")
    return "/dev/kvm passed through"


CHECKS = (
    ("primitive/kill", "docker kill -s KILL host2", check_kill),
    ("primitive/pause", "docker pause host2", check_pause),
    ("primitive/unplug-vmotion", "network disconnect vmotion host2", check_disconnect_one),
    ("primitive/unplug-all", "network disconnect all host2", check_disconnect_all),
    ("primitive/partition", "nft drop host1 | host2,host3", check_partition),
    ("primitive/loss", f"nft numgen {LOSS_PERCENT}% drop host2", check_loss),
    ("primitive/bandwidth", f"tc tbf {RATE_MBIT}mbit host2 vmotion", check_bandwidth),
    ("primitive/kvm", "--device /dev/kvm", check_kvm),
)


def run_primitives(c, emit):
    """Runs every check on a heartbeat cluster; emit(Row) for each."""
    rows = []
    for name, fault, check in CHECKS:
        t0 = time.monotonic()
        try:
            detail = check(c)
            if detail is None:
                row = Row(name, fault, SKIP, detail="host has no /dev/kvm")
            else:
                row = Row(name, fault, PASS, recover=f"{time.monotonic() - t0:.1f}s",
                          invariants="effect+heal", detail=detail)
        except Exception as e:  # noqa: BLE001 - any failure is this row's verdict
            row = Row(name, fault, FAIL, recover=f"{time.monotonic() - t0:.1f}s",
                      invariants="effect+heal", detail=f"{type(e).__name__}: {e}")
        rows.append(emit(row))
    return rows
