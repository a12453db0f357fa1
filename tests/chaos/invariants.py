"""The chaos suite's judge: observations of the agents in, verdicts out.

Pure: no docker, no clock, no I/O. The harness polls every agent (about every
200 ms), turns each answer into a NodeView with parse_view(), groups one round
into a Snapshot and hands it to Checker.observe(). test_invariants.py feeds
forged snapshots to the same code.

What an agent says, per the ferryctl --json contract (docs/chaos.md):
  cluster status  {"leader", "term", "commit_index", "applied_index",
                   "state_hash", "voters": [{"name", "match_index"}], "self"}
  host list       {"members": [{"name", "address", "state", "incarnation"}]}
  vm list         {"vms": [{"name", "owner", "power_state", "running_here"}]}
`leader` is the leader of `term` as this agent knows it, or "" if it knows none.

Invariants checked on every snapshot (safety; a breach is never excused):
  single-runner     a VM runs (running_here) on at most one host
  election-safety   at most one leader per term, across the whole run
  state-agreement   agents that applied the same index have the same state
                    hash, across the whole run
  no-vm-lost        an agent that applied past the point where a VM was seen
                    still lists it (scenarios never delete VMs)
  contract          a reachable agent answers with well-formed JSON
  migration-owner   while a VM is being live-migrated (watch_migration), a
                    host other than its source runs it only if its own state
                    names it the owner (the destination starts it only after
                    the ownership change applied there)
and one liveness invariant:
  leader-bound      some moment with a leader (the leader itself answers and
                    a quorum agrees on it and its term) at least every
                    `leader_bound` seconds
After a fault heals, converged() says whether the cluster is whole again:
every agent answers, a leader exists, every agent applied everything ever
seen committed, membership lists every host alive everywhere, every VM that
should run runs on exactly one host.
"""

from dataclasses import dataclass, field

# power_state values that mean "this VM should be running".
RUNNING_STATES = frozenset({"running", "on", "powered_on", "poweredon"})
MEMBER_STATES = frozenset({"alive", "suspect", "dead", "left"})

INVARIANTS = ("single-runner", "election-safety", "state-agreement", "no-vm-lost",
              "contract", "migration-owner", "leader-bound")


class ContractError(ValueError):
    """An agent answered, but not in the agreed shape."""


@dataclass(frozen=True)
class Member:
    name: str
    state: str
    incarnation: int


@dataclass(frozen=True)
class Vm:
    name: str
    owner: str
    power_state: str
    running_here: bool


@dataclass(frozen=True)
class NodeView:
    """One agent's answer in one polling round."""
    node: str                    # the host we asked
    ok: bool                     # it answered all three queries
    error: str = ""              # why not (unreachable, paused, contract: ...)
    contract_error: bool = False  # it answered, but malformed
    self_name: str = ""
    leader: str = ""
    term: int = 0
    commit_index: int = 0
    applied_index: int = 0
    state_hash: str = ""
    voters: tuple = ()           # names
    members: tuple = ()          # Member
    vms: tuple = ()              # Vm

    @property
    def is_leader(self):
        return self.ok and self.leader != "" and self.leader == self.self_name


@dataclass(frozen=True)
class Snapshot:
    t: float                     # seconds, any monotonic origin
    views: tuple                 # NodeView, one per host polled

    def answering(self):
        return [v for v in self.views if v.ok]


@dataclass(frozen=True)
class Violation:
    invariant: str
    t: float
    detail: str

    def __str__(self):
        return f"{self.invariant} at t={self.t:.1f}s: {self.detail}"


def unreachable(node, why):
    return NodeView(node=node, ok=False, error=why)


def _field(obj, key, kind, where):
    if not isinstance(obj, dict) or key not in obj:
        raise ContractError(f"{where}: missing \"{key}\"")
    value = obj[key]
    ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
    if not ok:
        raise ContractError(f"{where}: \"{key}\" is {type(value).__name__}, "
                            f"expected {kind.__name__}")
    return value


def _list(obj, key, where):
    items = _field(obj, key, list, where)
    for k, item in enumerate(items):
        if not isinstance(item, dict):
            raise ContractError(f"{where}: {key}[{k}] is not an object")
    return items


def parse_view(node, status, hosts, vms):
    """A NodeView from the three decoded JSON answers (dicts). A malformed
    answer gives a view with contract_error set: the checker reports it."""
    try:
        where = f"{node} cluster status"
        view = dict(
            self_name=_field(status, "self", str, where),
            leader=_field(status, "leader", str, where),
            term=_field(status, "term", int, where),
            commit_index=_field(status, "commit_index", int, where),
            applied_index=_field(status, "applied_index", int, where),
            state_hash=_field(status, "state_hash", str, where),
            voters=tuple(_field(v, "name", str, where)
                         for v in _list(status, "voters", where)))
        where = f"{node} host list"
        members = []
        for m in _list(hosts, "members", where):
            state = _field(m, "state", str, where)
            if state not in MEMBER_STATES:
                raise ContractError(f"{where}: state \"{state}\" is not one of "
                                    + "|".join(sorted(MEMBER_STATES)))
            members.append(Member(_field(m, "name", str, where), state,
                                  _field(m, "incarnation", int, where)))
        where = f"{node} vm list"
        vm_list = [Vm(_field(v, "name", str, where), _field(v, "owner", str, where),
                      _field(v, "power_state", str, where),
                      _field(v, "running_here", bool, where))
                   for v in _list(vms, "vms", where)]
    except ContractError as e:
        return NodeView(node=node, ok=False, contract_error=True, error=f"contract: {e}")
    return NodeView(node=node, ok=True, members=tuple(members), vms=tuple(vm_list), **view)


def quorum(n):
    return n // 2 + 1


def leader_of(snap, voters):
    """(name, term) of the leader in this snapshot, or None. A leader counts
    when it answers and says so itself, and a quorum of `voters` hosts
    (itself included) names it for the same term. A frozen or cut-off
    leader therefore does not count, even while followers still name it."""
    best = None
    for v in snap.answering():
        if not v.is_leader:
            continue
        backers = sum(1 for w in snap.answering()
                      if w.leader == v.self_name and w.term == v.term)
        if backers >= quorum(voters) and (best is None or v.term > best[1]):
            best = (v.self_name, v.term)
    return best


@dataclass
class Checker:
    """Accumulates what the run has seen and reports each breach once."""
    hosts: tuple                 # names of the hosts the cluster should have
    leader_bound: float          # seconds a cluster may go without a leader
    start_t: float = 0.0         # when leader-bound starts counting
    violations: list = field(default_factory=list)
    checks: int = 0              # invariant evaluations, for the report
    polls: int = 0
    leader_by_term: dict = field(default_factory=dict)   # term -> (leader, told by)
    hash_by_index: dict = field(default_factory=dict)    # applied index -> (hash, host)
    vm_seen_at: dict = field(default_factory=dict)       # vm -> lowest index listing it
    max_commit: int = 0
    last_leader_t: float = None
    migrating: dict = field(default_factory=dict)        # vm -> its source host
    _reported: set = field(default_factory=set)

    def _breach(self, invariant, t, detail, key=None):
        key = (invariant, key if key is not None else detail)
        if key in self._reported:
            return []
        self._reported.add(key)
        v = Violation(invariant, t, detail)
        self.violations.append(v)
        return [v]

    @property
    def ok(self):
        return not self.violations

    def watch_migration(self, vm, source):
        """A live migration of vm off source is under way (until
        unwatch_migration): checks migration-owner for it, and accepts the
        handover as single-runner sees it (see _handover)."""
        self.migrating[vm] = source

    def unwatch_migration(self, vm):
        self.migrating.pop(vm, None)

    def observe(self, snap):
        """Checks one polling round; returns the violations it found."""
        self.polls += 1
        found = []
        found += self._contract(snap)
        found += self._single_runner(snap)
        found += self._migration_owner(snap)
        found += self._election_safety(snap)
        found += self._state_agreement(snap)
        found += self._no_vm_lost(snap)
        found += self._leader_bound(snap)
        self.checks += len(INVARIANTS)
        for v in snap.answering():
            self.max_commit = max(self.max_commit, v.commit_index)
        return found

    def _contract(self, snap):
        found = []
        for v in snap.views:
            if v.contract_error:
                found += self._breach("contract", snap.t, v.error, key=v.node)
        return found

    def _single_runner(self, snap):
        runners = {}
        for v in snap.answering():
            for vm in v.vms:
                if vm.running_here:
                    runners.setdefault(vm.name, []).append(v)
        found = []
        for vm, views in sorted(runners.items()):
            where = [v.node for v in views]
            if len(where) > 1 and not self._handover(vm, views):
                found += self._breach("single-runner", snap.t,
                                      f"VM {vm} runs on {', '.join(sorted(where))}",
                                      key=(vm, tuple(sorted(where))))
        return found

    def _handover(self, vm, runners):
        """Two runners of a VM under migration that are the handover seen at
        two moments, not a double run: the polls of one round are not
        atomic. The source, at a lower applied index, still names itself
        owner; the destination, further on, names itself owner. Two hosts at
        the same index, or a runner its own state does not name owner, stay
        a breach."""
        source = self.migrating.get(vm)
        if source is None or len(runners) != 2:
            return False
        src = next((v for v in runners if v.node == source), None)
        dst = next((v for v in runners if v.node != source), None)
        if src is None or dst is None:
            return False

        def owner(view):
            return next(x.owner for x in view.vms if x.name == vm)
        return (src.applied_index < dst.applied_index and owner(src) == src.node
                and owner(dst) == dst.node)

    def _migration_owner(self, snap):
        found = []
        for v in snap.answering():
            for vm in v.vms:
                source = self.migrating.get(vm.name)
                if source is None or v.node == source or not vm.running_here:
                    continue
                if vm.owner != v.node:
                    found += self._breach(
                        "migration-owner", snap.t,
                        f"{v.node} runs VM {vm.name} (migrating off {source}) but its state "
                        f"names {vm.owner or 'nobody'} owner", key=(vm.name, v.node))
        return found

    def _election_safety(self, snap):
        found = []
        for v in snap.answering():
            if not v.leader:
                continue
            first = self.leader_by_term.setdefault(v.term, (v.leader, v.node))
            if first[0] != v.leader:
                found += self._breach(
                    "election-safety", snap.t,
                    f"two leaders in term {v.term}: {first[0]} (told by {first[1]}) "
                    f"and {v.leader} (told by {v.node})", key=v.term)
        return found

    def _state_agreement(self, snap):
        found = []
        for v in snap.answering():
            first = self.hash_by_index.setdefault(v.applied_index, (v.state_hash, v.node))
            if first[0] != v.state_hash:
                found += self._breach(
                    "state-agreement", snap.t,
                    f"state hash differs at applied index {v.applied_index}: "
                    f"{first[1]} has {first[0]}, {v.node} has {v.state_hash}",
                    key=v.applied_index)
        return found

    def _no_vm_lost(self, snap):
        for v in snap.answering():
            for vm in v.vms:
                seen = self.vm_seen_at.get(vm.name)
                if seen is None or v.applied_index < seen:
                    self.vm_seen_at[vm.name] = v.applied_index
        found = []
        for v in snap.answering():
            listed = {vm.name for vm in v.vms}
            for name, index in sorted(self.vm_seen_at.items()):
                if v.applied_index >= index and name not in listed:
                    found += self._breach(
                        "no-vm-lost", snap.t,
                        f"{v.node} applied index {v.applied_index} but has no VM {name} "
                        f"(listed at index {index})", key=(name, v.node))
        return found

    def _leader_bound(self, snap):
        if self.last_leader_t is None:
            self.last_leader_t = self.start_t
        if leader_of(snap, len(self.hosts)):
            self.last_leader_t = snap.t
            return []
        gap = snap.t - self.last_leader_t
        if gap > self.leader_bound:
            return self._breach("leader-bound", snap.t,
                                f"no leader for {gap:.1f}s (bound {self.leader_bound:.1f}s)",
                                key=self.last_leader_t)
        return []

    def converged(self, snap):
        """Reasons the cluster is not whole yet in this snapshot; [] = whole."""
        reasons = []
        views = {v.node: v for v in snap.views}
        for host in self.hosts:
            if host not in views or not views[host].ok:
                why = views[host].error if host in views else "not polled"
                reasons.append(f"{host} does not answer ({why})")
        if reasons:
            return reasons
        if not leader_of(snap, len(self.hosts)):
            reasons.append("no leader backed by a quorum")
        for v in snap.views:
            if v.applied_index < self.max_commit:
                reasons.append(f"{v.node} applied {v.applied_index} < committed {self.max_commit}")
            states = {m.name: m.state for m in v.members}
            for host in self.hosts:
                if states.get(host) != "alive":
                    reasons.append(f"{v.node} sees {host} as {states.get(host, 'absent')}")
            listed = {vm.name for vm in v.vms}
            missing = sorted(set(self.vm_seen_at) - listed)
            if missing:
                reasons.append(f"{v.node} lacks VMs {', '.join(missing)}")
        runners = {}
        should_run = set()
        for v in snap.views:
            for vm in v.vms:
                if vm.running_here:
                    runners.setdefault(vm.name, []).append(v.node)
                if vm.power_state.lower() in RUNNING_STATES and v.is_leader:
                    should_run.add(vm.name)
        for name in sorted(should_run):
            where = runners.get(name, [])
            if len(where) != 1:
                reasons.append(f"VM {name} should run once, runs on "
                               f"{', '.join(sorted(where)) or 'no host'}")
        return reasons
