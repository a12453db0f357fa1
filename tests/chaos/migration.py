"""Live migration under fault: the migrate/* scenarios' moving parts.

A scenario picks a VM that runs on a follower and moves it to the other
follower with `ferryctl --json vm migrate` (run on the source, its owner).
The agents cap pre-copy at AGENT_CONFIG's bandwidth, so the full pass of the
VM's written memory lasts seconds; the fault is injected once the source's
`vm migrations --json` shows the job in pre-copy with pages sent, not after a
guessed delay. While the migration runs the checker watches the VM
(Checker.watch_migration). After the heal and convergence, verify() checks
how the command ended and where the VM runs, then retries the migration: a
retry that succeeds proves the VM stayed usable and nothing stale (a
receiver, a slot, a reserved name) blocks it.
"""

import json
import subprocess
import time

from invariants import leader_of

# Appended to every agent's ferry.conf: 8 MB/s of pre-copy. A workload VM
# has written its 16 MiB hot set within a second of booting (and more as it
# ages: one write in 64 leaves the hot set), so its full pass lasts two
# seconds at least, several times what injecting a fault takes.
AGENT_CONFIG = ("\n# chaos: cap pre-copy so that faults land in the middle of it\n"
                "[migration]\nbandwidth = 8M\n")
WORKLOAD_PROFILE = "web:hot=16M,rate=32M"
WORKLOAD_MEMORY = "128M"

PRECOPY_TIMEOUT = 30.0    # seconds for a job to reach pre-copy with pages sent
COMMAND_TIMEOUT = 120.0   # the data plane gives up after 10-30 s of silence
RETRY_ATTEMPTS = 3
RETRY_PAUSE = 5.0


class Migration:
    """One `ferryctl vm migrate` run in the source's container."""

    def __init__(self, vm, src, dst):
        self.vm, self.src, self.dst = vm, src, dst
        self.proc = None
        self.rc = None
        self.result = {}          # the finished job (--json), if it printed one
        self.stderr = ""
        self.precopy = {}         # the job's progress when the fault went in
        self.hung = False

    def start(self, run):
        run.checker.watch_migration(self.vm, self.src.name)
        self.proc = subprocess.Popen(
            ["docker", "exec", self.src.container, "ferryctl", "--json", "vm", "migrate",
             self.vm, "--to", self.dst.name],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        return self

    def job_progress(self, run):
        """The source's latest job for this VM, or {}."""
        try:
            jobs = run.cluster.ferryctl_json(self.src, "vm", "migrations")
        except (RuntimeError, ValueError):
            return {}
        mine = [j for j in jobs.get("migrations", []) if j.get("vm") == self.vm]
        return mine[-1] if mine else {}

    def wait_precopy(self, run, timeout=PRECOPY_TIMEOUT):
        """Polls (cluster and job) until the job is in its full pass with
        pages sent; raises if it never gets there or was past it when first
        seen (then a fault could land after the switchover)."""
        deadline = time.monotonic() + timeout
        job = {}
        for _ in range(int(timeout / 0.1) + 2):
            run.poll()
            job = self.job_progress(run)
            progress = job.get("progress") or {}
            if progress.get("phase") == "full" and progress.get("pass_pages_sent", 0) > 0:
                self.precopy = progress
                return progress
            if progress.get("phase") in ("iterate", "switchover"):
                break
            if self.proc.poll() is not None or time.monotonic() > deadline:
                break
        self.finish(run)        # let it end before the next scenario
        raise RuntimeError(f"migration of {self.vm} never seen in its full pass (job {job}; "
                           f"command exit {self.rc}: {self.stderr.strip()[:80]})")

    def finish(self, run, timeout=COMMAND_TIMEOUT):
        """Polls the cluster until the command ends (or kills it after
        timeout: a hang); stores exit code, JSON result and stderr."""
        if self.rc is not None:
            return self
        run.poll_for(timeout, until=lambda snap: self.proc.poll() is not None)
        if self.proc.poll() is None:
            self.hung = True
            self.proc.kill()
        out, err = self.proc.communicate(timeout=30)
        self.rc, self.stderr = self.proc.returncode, (err or "").strip()
        try:
            self.result = json.loads(out) if out.strip() else {}
        except ValueError:
            self.result = {"unparsed": out.strip()[:200]}
        run.checker.unwatch_migration(self.vm)
        return self

    def where(self):
        """A short account for the row's detail."""
        if self.hung:
            return f"migrate {self.vm} {self.src}->{self.dst} HUNG (killed after {COMMAND_TIMEOUT:.0f}s)"
        at = (f" (seen in its full pass, {self.precopy.get('pass_pages_sent')} pages sent)"
              if self.precopy else "")
        return f"migrate {self.vm} {self.src}->{self.dst} exit {self.rc}{at}"


def pick(run):
    """(vm, source, destination): a VM running on a follower, moved to
    another follower, so the faults hit the migration and not the leader."""
    snap = run.poll()
    found = leader_of(snap, len(run.cluster.nodes))
    leader = found[0] if found else None
    followers = [n for n in run.cluster.nodes if n.name != leader]
    for view in snap.answering():
        src = next((n for n in followers if n.name == view.node), None)
        if src is None:
            continue
        for vm in view.vms:
            if vm.running_here and vm.owner == src.name:
                dst = next(n for n in followers if n is not src)
                return vm.name, src, dst
    raise RuntimeError("no VM running on a follower to migrate")


LEADER_WAIT_S = 5.0   # how long check_placement waits for a leader to answer


def runners_and_owner(snap, vm):
    """(hosts running vm, its owner as the leader states it)."""
    runners = sorted(v.node for v in snap.answering()
                     for x in v.vms if x.name == vm and x.running_here)
    owner = None
    for v in snap.answering():
        if v.is_leader:
            owner = next((x.owner for x in v.vms if x.name == vm), None)
    return runners, owner


def check_placement(run, vm, expect_host=None):
    """Problems with where vm runs now: exactly one runner, the one the
    leader names owner (and expect_host, if given)."""
    runners, owner = runners_and_owner(run.poll(), vm)
    # A poll in which no node answered as leader says nothing about the
    # owner: ask again for a few seconds (a leader change may be under way).
    deadline = time.monotonic() + LEADER_WAIT_S
    while owner is None and time.monotonic() < deadline:
        run.poll_for(0.5)
        runners, owner = runners_and_owner(run.poll(), vm)
    problems = []
    if len(runners) != 1:
        problems.append(f"{vm} runs on {', '.join(runners) or 'no host'}, expected one host")
    elif owner != runners[0]:
        problems.append(f"{vm} runs on {runners[0]} but the leader names {owner} owner")
    elif expect_host is not None and runners[0] != expect_host:
        problems.append(f"{vm} runs on {runners[0]}, expected {expect_host}")
    return problems, runners[0] if len(runners) == 1 else None


def check_vmotion(m):
    """Problems with a successful migration's figures and network."""
    r = m.result
    problems = []
    if m.rc != 0 or r.get("state") != "succeeded":
        return [f"{m.where()}: state {r.get('state')}: {m.stderr[:120] or r.get('error', '')}"]
    if r.get("network") != "vmotion" or r.get("network_fallback") is not False:
        problems.append(f"network {r.get('network')!r} (fallback {r.get('network_fallback')}), "
                        "expected vmotion without fallback")
    if r.get("address") != m.dst.addresses["vmotion"]:
        problems.append(f"address {r.get('address')!r}, expected {m.dst}'s vmotion "
                        f"{m.dst.addresses['vmotion']}")
    if r.get("committed") is not True:
        problems.append("not committed")
    return problems


def figures(m):
    r = m.result
    return (f"{r.get('network')}/{r.get('interface')}, downtime {r.get('downtime_ms') or 0:.0f} ms, "
            f"total {(r.get('total_ms') or 0) / 1000:.1f} s, {r.get('passes')} passes, "
            f"{(r.get('bytes_sent') or 0) / 2**20:.0f} MiB")


def retry(run, vm, src, dst):
    """Migrates vm src -> dst again after the heal; (problems, fact). A
    failed attempt is retried (a destination just back may still be
    starting up) and named in the fact."""
    failures = []
    for attempt in range(1, RETRY_ATTEMPTS + 1):
        m = Migration(vm, src, dst).start(run).finish(run)
        if m.rc == 0:
            problems = check_vmotion(m)
            placed, _ = check_placement(run, vm, expect_host=dst.name)
            fact = f"retry {src}->{dst} ok" + (f" at attempt {attempt}" if attempt > 1 else "") \
                + f" ({figures(m)})"
            if failures:
                fact += f"; earlier: {failures[0]}"
            return problems + placed, fact
        failures.append(f"exit {m.rc}: {m.stderr.splitlines()[-1][:200] if m.stderr else m.result}")
        run.poll_for(RETRY_PAUSE)
    return [f"retry {src}->{dst} failed {RETRY_ATTEMPTS} times: {failures[-1]}"], ""


# --- the scenarios' three parts ------------------------------------------------

def start_in_precopy(run):
    """Picks a VM, starts migrating it and returns once pre-copy is under way."""
    vm, src, dst = pick(run)
    m = Migration(vm, src, dst).start(run)
    m.wait_precopy(run)
    return {"m": m}


def expect_failed(run, state):
    """The fault killed the migration before its commit: the command said
    so (exit 1, one line naming the source), the VM runs on the source only,
    still owned by it; then the retry must succeed."""
    m = state["m"]
    problems = []
    if m.hung:
        problems.append(m.where())
    elif m.rc != 1:
        problems.append(f"{m.where()}, expected 1: {m.stderr[:100]}")
    elif f"keeps running on {m.src}" not in m.stderr or len(m.stderr.splitlines()) != 1:
        problems.append(f"stderr is not one line saying it keeps running on {m.src}: {m.stderr!r}")
    if m.result.get("committed"):
        problems.append("the failed migration says it committed")
    placed, _ = check_placement(run, m.vm, expect_host=m.src.name)
    problems += placed
    facts = [m.where(), (m.result.get("error") or "")[:70]]
    if not problems:
        more, fact = retry(run, m.vm, m.src, m.dst)
        problems += more
        facts.append(fact)
    return problems, facts


def expect_one_owner(run, state):
    """The fault may or may not have let the commit through: the VM runs
    on exactly one host, the one the leader names owner (the destination if
    the command succeeded, the source if it failed); then it moves on."""
    m = state["m"]
    problems = [m.where()] if m.hung else []
    placed, host = check_placement(run, m.vm)
    problems += placed
    expected = {0: m.dst.name, 1: m.src.name}.get(m.rc)
    if host and expected and host != expected:
        problems.append(f"{m.where()} but {m.vm} runs on {host}")
    if m.rc not in (0, 1) and not m.hung:
        problems.append(f"{m.where()}: expected 0 or 1")
    facts = [m.where() + (f", VM on {host}" if host else "")]
    if not problems:
        there, back = (m.dst, m.src) if host == m.dst.name else (m.src, m.dst)
        more, fact = retry(run, m.vm, there, back)
        problems += more
        facts.append(fact)
    return problems, facts


def expect_vmotion(run, state):
    """No fault: the migration succeeds over the vmotion network."""
    m = state["m"]
    problems = [m.where()] if m.hung else check_vmotion(m)
    placed, _ = check_placement(run, m.vm, expect_host=m.dst.name)
    return problems + placed, [f"{m.where()}: {figures(m)}" if m.rc == 0 else m.where()]
