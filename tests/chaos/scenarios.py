"""Cluster scenarios: one fault each against a running ferry cluster, with
the invariants checked on every poll while it lasts and after it heals.

Each scenario is a Scenario(name, fault text, inject, heal). inject() gets the
Run and returns whatever heal() needs; while the fault holds, the run polls
every agent about every 200 ms and feeds the checker. After heal(), it polls
until the cluster is whole again (Checker.converged) or the deadline passes.
"""

import time
from dataclasses import dataclass, field

import migration
from cluster import pool_for, wait_for
from invariants import INVARIANTS, Checker, leader_of
from report import FAIL, PASS, SKIP, Row

WORKLOAD_VMS = 3


@dataclass
class Settings:
    hold: float = 8.0              # seconds a fault lasts
    leader_bound: float = 10.0     # seconds the cluster may go without a leader
    converge_timeout: float = 60.0
    poll: float = 0.2              # seconds between polls


@dataclass
class Run:
    """One chaos run against one cluster: the checker persists across
    scenarios, so election safety and state agreement hold for the whole run."""
    cluster: object
    settings: Settings
    checker: Checker = None
    pool: object = None
    last: object = None            # the latest Snapshot
    notes: list = field(default_factory=list)

    def __post_init__(self):
        self.pool = pool_for(self.cluster)
        self.checker = Checker(hosts=tuple(n.name for n in self.cluster.nodes),
                               leader_bound=self.settings.leader_bound,
                               start_t=self.cluster.now())

    def poll(self):
        self.last = self.cluster.observe(self.pool)
        self.checker.observe(self.last)
        return self.last

    def poll_for(self, seconds, until=None):
        """Polls for `seconds`, or until until(snapshot) is true; returns
        the time until() became true, or None."""
        deadline = time.monotonic() + seconds
        for _ in range(int(seconds / self.settings.poll) + 2):
            t = time.monotonic()
            snap = self.poll()
            if until is not None and until(snap):
                return self.cluster.now()
            if time.monotonic() >= deadline:
                return None
            time.sleep(max(0.0, self.settings.poll - (time.monotonic() - t)))
        return None

    def wait_converged(self, timeout):
        """(seconds, []) when the cluster became whole, (None, reasons) if not."""
        t0 = self.cluster.now()
        reasons = ["never polled"]

        def whole(snap):
            nonlocal reasons
            reasons = self.checker.converged(snap)
            return not reasons
        done = self.poll_for(timeout, until=whole)
        return (done - t0, []) if done is not None else (None, reasons)

    def leader(self):
        found = leader_of(self.poll(), len(self.cluster.nodes))
        return self.cluster.node(found[0]) if found else None

    def followers(self, leader):
        return [n for n in self.cluster.nodes if n is not leader]


@dataclass
class Scenario:
    name: str
    fault: str
    inject: object                 # (run) -> state for heal
    heal: object                   # (run, state) -> None
    quick: bool = False
    needs: str = "cluster"         # capability: "cluster" or "migrate"
    new_leader: bool = False       # the fault removes the leader: time a new one
    verify: object = None          # (run, state) -> (problems, facts), once whole again


def run_scenario(run, sc):
    """Baseline, fault, hold, heal, converge; returns a Row."""
    c, s, ck = run.cluster, run.settings, run.checker
    took, reasons = run.wait_converged(s.converge_timeout)
    if took is None:
        return Row(sc.name, sc.fault, FAIL, detail="not whole before the fault: " + "; ".join(reasons[:3]))
    ck.last_leader_t = c.now()          # leader-bound counts from the fault
    before = len(ck.violations)
    polls0 = ck.polls
    t_fault = c.now()
    state = sc.inject(run)
    leader_t = None
    old = state.get("leader") if isinstance(state, dict) else None
    if sc.new_leader:
        def new_leader(snap):
            found = leader_of(snap, len(c.nodes))
            return found is not None and (old is None or found[0] != old.name)
        # the leader is gone or cut off: another must take over within the bound
        leader_t = run.poll_for(s.leader_bound, until=new_leader)
        rest = s.hold - (c.now() - t_fault)
        if rest > 0:
            run.poll_for(rest)
    else:
        run.poll_for(s.hold)
    sc.heal(run, state)
    took, reasons = run.wait_converged(s.converge_timeout)
    problems, facts = [], []
    if sc.verify is not None and took is not None and not ck.violations[before:]:
        problems, facts = sc.verify(run, state)
        facts = [f for f in facts if f]
    found = ck.violations[before:]
    checked = f"{len(INVARIANTS)} x {ck.polls - polls0} polls"
    no_new_leader = sc.new_leader and leader_t is None
    if sc.new_leader:
        facts.append(f"new leader after {leader_t - t_fault:.1f}s" if leader_t is not None
                     else f"no new leader within {s.leader_bound:.0f}s")
    if isinstance(state, dict) and state.get("note"):
        facts.append(state["note"])
    if found:
        return Row(sc.name, sc.fault, FAIL, invariants=checked,
                   recover=f"{took:.1f}s" if took is not None else "never",
                   detail="; ".join([str(v) for v in found[:3]] + facts))
    if took is None:
        return Row(sc.name, sc.fault, FAIL, invariants=checked, recover="never",
                   detail="not whole after heal: " + "; ".join(reasons[:3]))
    if problems:
        return Row(sc.name, sc.fault, FAIL, invariants=checked, recover=f"{took:.1f}s",
                   detail="; ".join(problems[:3] + facts))
    if no_new_leader:
        return Row(sc.name, sc.fault, FAIL, invariants=checked, recover=f"{took:.1f}s",
                   detail="; ".join(facts))
    return Row(sc.name, sc.fault, PASS, recover=f"{took:.1f}s", invariants=checked,
               detail="; ".join(facts))


# --- the faults ---------------------------------------------------------------

def _leader_or_fail(run, timeout=5.0):
    """The leader, asked again for a few seconds: one poll can miss it
    (a slow docker exec makes an agent look silent)."""
    deadline = time.monotonic() + timeout
    for _ in range(int(timeout / run.settings.poll) + 2):
        leader = run.leader()
        if leader is not None:
            return leader
        if time.monotonic() > deadline:
            break
        time.sleep(run.settings.poll)
    raise RuntimeError(f"no leader to aim the fault at within {timeout:.0f}s")


def kill_leader(run):
    leader = _leader_or_fail(run)
    run.cluster.kill(leader)
    return {"leader": leader, "note": f"killed {leader}"}


def restart_killed(run, state):
    run.cluster.start(state["leader"])


def partition_minority(run):
    leader = _leader_or_fail(run)
    followers = run.followers(leader)
    size = (len(run.cluster.nodes) - 1) // 2            # the largest minority
    minority = followers[:size]
    majority = [n for n in run.cluster.nodes if n not in minority]
    run.cluster.partition([minority, majority])
    return {"note": f"cut off {', '.join(map(str, minority))}"}


def partition_leader_in_minority(run):
    leader = _leader_or_fail(run)
    size = (len(run.cluster.nodes) - 1) // 2
    minority = [leader] + run.followers(leader)[:size - 1]
    majority = [n for n in run.cluster.nodes if n not in minority]
    run.cluster.partition([minority, majority])
    return {"leader": leader, "note": f"{', '.join(map(str, majority))} must elect"}


def heal_partition(run, state):
    run.cluster.heal_partition()


def pause_leader(run):
    leader = _leader_or_fail(run)
    run.cluster.pause(leader)
    return {"leader": leader, "note": f"paused {leader} {run.settings.hold:.0f}s"}


def unpause_leader(run, state):
    run.cluster.unpause(state["leader"])


def loss_everywhere(run):
    run.cluster.set_loss(run.cluster.nodes, 10)
    return {}


def clear_loss(run, state):
    run.cluster.clear_loss()


def throttle_everywhere(run):
    run.cluster.limit_bandwidth(run.cluster.nodes, "1mbit")
    return {}


def clear_throttle(run, state):
    run.cluster.clear_bandwidth()


def unplug_follower(run):
    leader = _leader_or_fail(run)
    victim = run.followers(leader)[-1]
    run.cluster.disconnect(victim)
    return {"victim": victim, "note": f"unplugged {victim} (interfaces come back renamed)"}


def replug_follower(run, state):
    run.cluster.connect(state["victim"])


def rolling_restart(run):
    """Restarts every agent in turn (SIGTERM, 10 s grace), waiting for the
    cluster to be whole before the next; the hold is this whole sequence."""
    slowest = 0.0
    for node in run.cluster.nodes:
        run.cluster.restart(node)
        took, reasons = run.wait_converged(run.settings.converge_timeout)
        if took is None:
            raise RuntimeError(f"not whole {run.settings.converge_timeout:.0f}s after "
                               f"restarting {node}: {'; '.join(reasons[:2])}")
        slowest = max(slowest, took)
    return {"note": f"slowest restart {slowest:.1f}s to whole"}


def nothing(run, state):
    pass


# --- live migration under fault: see migration.py ----------------------------

def migrate_kill_destination(run):
    state = migration.start_in_precopy(run)
    run.cluster.kill(state["m"].dst)
    return state


def restart_destination(run, state):
    state["m"].finish(run)              # it must end with the destination still dead
    run.cluster.start(state["m"].dst)


def migrate_cut_vmotion(run):
    state = migration.start_in_precopy(run)
    run.cluster.disconnect(state["m"].src, {"vmotion"})
    return state


def replug_vmotion(run, state):
    state["m"].finish(run)              # it must end with vmotion still cut
    run.cluster.connect(state["m"].src, {"vmotion"})


def migrate_pause_source(run):
    state = migration.start_in_precopy(run)
    run.cluster.pause(state["m"].src)
    return state


def unpause_source(run, state):
    run.cluster.unpause(state["m"].src)
    state["m"].finish(run)              # the command was frozen with its source


def migrate_plainly(run):
    return migration.start_in_precopy(run)


def finish_migration(run, state):
    state["m"].finish(run)


SCENARIOS = (
    Scenario("kill-leader", "SIGKILL the leader, restart it after the hold",
             kill_leader, restart_killed, quick=True, new_leader=True),
    Scenario("partition-minority", "nft: a minority of followers cut off",
             partition_minority, heal_partition, quick=True),
    Scenario("partition-majority", "nft: the leader's side is a minority",
             partition_leader_in_minority, heal_partition, new_leader=True),
    Scenario("pause-leader", "docker pause the leader > election timeout",
             pause_leader, unpause_leader, quick=True, new_leader=True),
    Scenario("loss-10pct", "nft: 10% packet loss into every host",
             loss_everywhere, clear_loss),
    Scenario("bandwidth-1mbit", "tc tbf: 1 Mbit/s out of every interface",
             throttle_everywhere, clear_throttle),
    Scenario("rolling-restart", "docker restart every agent in turn",
             rolling_restart, nothing),
    Scenario("unplug-follower", "network disconnect a follower (all nets)",
             unplug_follower, replug_follower),
    Scenario("migrate/vmotion", "none: live migration over vmotion",
             migrate_plainly, finish_migration, needs="migrate",
             verify=migration.expect_vmotion),
    Scenario("migrate/kill-destination", "live migration, destination SIGKILLed",
             migrate_kill_destination, restart_destination, needs="migrate",
             verify=migration.expect_failed),
    Scenario("migrate/cut-vmotion", "live migration, source's vmotion unplugged",
             migrate_cut_vmotion, replug_vmotion, needs="migrate",
             verify=migration.expect_failed),
    Scenario("migrate/pause-source", "live migration, source paused",
             migrate_pause_source, unpause_source, needs="migrate",
             verify=migration.expect_one_owner),
)


def create_workload(run, count=WORKLOAD_VMS):
    """Creates and starts a few small VMs, one per host in turn, for the VM
    invariants to watch and the migrate/* scenarios to move; waits until
    each runs once. When creating fails, the run goes on without VMs and
    says so (the VM invariants then hold vacuously, migrate/* fail)."""
    leader = _leader_or_fail(run)
    names = [f"chaos-vm{i}" for i in range(1, count + 1)]
    for i, name in enumerate(names):
        host = run.cluster.nodes[i % len(run.cluster.nodes)]
        r = run.cluster.exec(leader, "ferryctl", "vm", "create", name,
                             "--memory", migration.WORKLOAD_MEMORY,
                             "--profile", migration.WORKLOAD_PROFILE,
                             "--host", host.name, "--start", timeout=30)
        if r.returncode != 0:
            lines = (r.stderr or r.stdout).strip().splitlines()
            return f"no VMs: ferryctl vm create: {lines[-1] if lines else r.returncode}"

    def all_run_once(snap):
        running = [x.name for v in snap.answering() for x in v.vms if x.running_here]
        return sorted(running) == names
    wait_for("every VM runs on one host", lambda: all_run_once(run.poll()), 60)
    return f"{count} VMs ({migration.WORKLOAD_MEMORY}, {migration.WORKLOAD_PROFILE}), one per host"


def run_scenarios(run, chosen, caps, emit):
    rows = []
    for sc in chosen:
        reason = caps.get(sc.needs)
        if reason:
            rows.append(emit(Row(sc.name, sc.fault, SKIP, detail=reason)))
            continue
        try:
            row = run_scenario(run, sc)
        except Exception as e:  # noqa: BLE001 - the scenario's verdict
            row = Row(sc.name, sc.fault, FAIL, detail=f"{type(e).__name__}: {e}")
        rows.append(emit(row))
    return rows
