"""The invariant checker must fail on every forged breach and pass a
consistent history. Runs without docker:

    python3 -m unittest discover -s tests/chaos -p 'test_*.py' -v
"""

import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from invariants import (Checker, Member, NodeView, Snapshot, Vm,  # noqa: E402
                        leader_of, parse_view, unreachable)

HOSTS = ("host1", "host2", "host3")
ALIVE = tuple(Member(h, "alive", 1) for h in HOSTS)


def view(node, leader="host1", term=2, applied=10, commit=10, state_hash=None, vms=(),
         members=ALIVE):
    return NodeView(node=node, ok=True, self_name=node, leader=leader, term=term,
                    commit_index=commit, applied_index=applied,
                    state_hash=state_hash or f"h{applied}", voters=HOSTS,
                    members=members, vms=tuple(vms))


def vm(name, running_here, owner="host1", power="running"):
    return Vm(name=name, owner=owner, power_state=power, running_here=running_here)


def healthy(t, applied=10, leader="host1", term=2):
    """Three agents agreeing on everything; web1 runs on its owner host1."""
    def vms(node):
        return [vm("web1", running_here=(node == "host1")), vm("db1", False, power="off")]
    return Snapshot(t, tuple(view(h, leader=leader, term=term, applied=applied,
                                  commit=applied, vms=vms(h)) for h in HOSTS))


def replace(snap, node, **changes):
    views = []
    for v in snap.views:
        if v.node == node:
            fields = {k: getattr(v, k) for k in v.__dataclass_fields__}
            fields.update(changes)
            v = NodeView(**fields)
        views.append(v)
    return Snapshot(snap.t, tuple(views))


def run(snaps, bound=5.0):
    c = Checker(hosts=HOSTS, leader_bound=bound, start_t=snaps[0].t)
    for s in snaps:
        c.observe(s)
    return c


def kinds(checker):
    return sorted({v.invariant for v in checker.violations})


class ConsistentHistory(unittest.TestCase):
    def test_a_consistent_history_passes_and_converges(self):
        snaps = [healthy(t * 0.2, applied=10 + t) for t in range(20)]
        c = run(snaps)
        self.assertEqual(c.violations, [])
        self.assertEqual(c.converged(snaps[-1]), [])
        self.assertEqual(c.polls, 20)
        self.assertGreater(c.checks, 0)

    def test_a_follower_lagging_behind_is_not_a_breach(self):
        s = replace(healthy(0.0, applied=12), "host3", applied_index=11, state_hash="h11",
                    commit_index=11)
        c = run([healthy(0.0, applied=11), s])
        self.assertEqual(c.violations, [])
        self.assertEqual(c.converged(s), ["host3 applied 11 < committed 12"])

    def test_a_leader_change_in_a_new_term_passes(self):
        snaps = [healthy(0.0, leader="host1", term=2),
                 healthy(1.0, leader="host2", term=3, applied=11)]
        c = run(snaps)
        self.assertEqual(c.violations, [])
        self.assertEqual(c.converged(snaps[-1]), [])

    def test_an_unreachable_host_is_not_a_breach_but_blocks_convergence(self):
        s = healthy(0.0)
        s = Snapshot(0.0, (s.views[0], s.views[1], unreachable("host3", "paused")))
        c = run([s])
        self.assertEqual(c.violations, [])
        self.assertIn("host3 does not answer (paused)", c.converged(s))


class ForgedBreaches(unittest.TestCase):
    def test_two_hosts_running_one_vm_fails(self):
        s = replace(healthy(0.0), "host2",
                    vms=(vm("web1", running_here=True), vm("db1", False, power="off")))
        c = run([s])
        self.assertEqual(kinds(c), ["single-runner"])
        self.assertIn("web1 runs on host1, host2", str(c.violations[0]))
        self.assertIn("VM web1 should run once, runs on host1, host2", c.converged(s))

    def test_a_host_running_a_migrating_vm_it_does_not_own_fails(self):
        # host2 (the destination) runs web1 while its state still names host1
        s = replace(healthy(0.0), "host2",
                    vms=(vm("web1", running_here=True), vm("db1", False, power="off")))
        c = Checker(hosts=HOSTS, leader_bound=5.0, start_t=0.0)
        c.watch_migration("web1", "host1")
        c.observe(s)
        self.assertEqual(kinds(c), ["migration-owner", "single-runner"])
        self.assertTrue(any("host2 runs VM web1 (migrating off host1) but its state names host1"
                            in str(v) for v in c.violations), c.violations)

    def test_two_runners_at_one_index_fail_even_mid_migration(self):
        s = replace(healthy(0.0), "host2",
                    vms=(vm("web1", running_here=True, owner="host2"), vm("db1", False, power="off")))
        c = Checker(hosts=HOSTS, leader_bound=5.0, start_t=0.0)
        c.watch_migration("web1", "host1")
        c.observe(s)
        self.assertEqual(kinds(c), ["single-runner"])

    def test_a_handover_seen_at_two_moments_passes_only_while_watched(self):
        # host1 polled before the ownership change applied, host2 after it
        s = healthy(0.0, applied=10)
        s = replace(s, "host2", applied_index=11, commit_index=11, state_hash="h11",
                    vms=(vm("web1", running_here=True, owner="host2"), vm("db1", False, power="off")))
        watched = Checker(hosts=HOSTS, leader_bound=5.0, start_t=0.0)
        watched.watch_migration("web1", "host1")
        watched.observe(s)
        self.assertEqual(watched.violations, [])
        watched.unwatch_migration("web1")
        self.assertEqual(kinds(run([s])), ["single-runner"])

    def test_a_lost_vm_fails(self):
        before = healthy(0.0, applied=10)
        after = replace(healthy(0.2, applied=11), "host2", vms=(vm("db1", False, power="off"),))
        c = run([before, after])
        self.assertEqual(kinds(c), ["no-vm-lost"])
        self.assertIn("host2", c.violations[0].detail)
        self.assertIn("web1", c.violations[0].detail)

    def test_a_vm_running_nowhere_blocks_convergence(self):
        s = healthy(0.0)
        s = replace(s, "host1", vms=(vm("web1", False), vm("db1", False, power="off")))
        c = run([s])
        self.assertIn("VM web1 should run once, runs on no host", c.converged(s))

    def test_divergent_state_hashes_at_the_same_index_fail(self):
        s = replace(healthy(0.0, applied=10), "host3", state_hash="evil")
        c = run([s])
        self.assertEqual(kinds(c), ["state-agreement"])
        self.assertIn("applied index 10", c.violations[0].detail)

    def test_divergence_is_caught_across_polls_too(self):
        first = healthy(0.0, applied=10)
        later = replace(healthy(0.2, applied=11), "host2", applied_index=10, state_hash="other")
        c = run([first, later])
        self.assertEqual(kinds(c), ["state-agreement"])

    def test_two_leaders_in_the_same_term_fail(self):
        s = healthy(0.0, leader="host1", term=4)
        s = replace(s, "host3", leader="host3")   # host3 claims term 4 too
        c = run([s])
        self.assertEqual(kinds(c), ["election-safety"])
        self.assertIn("term 4", c.violations[0].detail)

    def test_two_leaders_in_one_term_across_polls_fail(self):
        c = run([healthy(0.0, leader="host1", term=4),
                 healthy(0.2, leader="host2", term=4, applied=11)])
        self.assertEqual(kinds(c), ["election-safety"])

    def test_no_leader_for_longer_than_the_bound_fails(self):
        leaderless = [replace(replace(replace(healthy(t), "host1", leader=""),
                                      "host2", leader=""), "host3", leader="")
                      for t in (0.0, 2.0, 4.0, 6.0, 8.0)]
        c = run([healthy(0.0)] + leaderless[1:], bound=5.0)
        self.assertEqual(kinds(c), ["leader-bound"])
        self.assertEqual(len(c.violations), 1, "one gap is one breach, reported once")

    def test_a_frozen_leader_does_not_count_as_a_leader(self):
        s = healthy(0.0)
        frozen = Snapshot(0.0, (unreachable("host1", "paused"),) + s.views[1:])
        self.assertIsNone(leader_of(frozen, 3))
        self.assertEqual(leader_of(s, 3), ("host1", 2))

    def test_a_leader_without_a_quorum_does_not_count(self):
        s = replace(replace(healthy(0.0), "host2", leader="", term=3), "host3", leader="", term=3)
        self.assertIsNone(leader_of(s, 3))

    def test_a_malformed_answer_is_a_contract_breach(self):
        bad = parse_view("host2", {"leader": "host1"}, {"members": []}, {"vms": []})
        self.assertFalse(bad.ok)
        self.assertTrue(bad.contract_error)
        s = healthy(0.0)
        c = run([Snapshot(0.0, (s.views[0], bad, s.views[2]))])
        self.assertEqual(kinds(c), ["contract"])


class Parsing(unittest.TestCase):
    STATUS = {"leader": "host1", "term": 3, "commit_index": 7, "applied_index": 7,
              "state_hash": "ab12", "voters": [{"name": "host1", "match_index": 7}],
              "learners": [], "self": "host2"}
    HOSTS = {"members": [{"name": "host1", "address": "198.18.1.11:7402",
                          "state": "alive", "incarnation": 2}]}
    VMS = {"vms": [{"name": "web1", "owner": "host1", "power_state": "running",
                    "running_here": False}]}

    def test_a_well_formed_answer_parses(self):
        v = parse_view("host2", self.STATUS, self.HOSTS, self.VMS)
        self.assertTrue(v.ok, v.error)
        self.assertEqual((v.self_name, v.leader, v.term, v.applied_index), ("host2", "host1", 3, 7))
        self.assertEqual(v.members[0], Member("host1", "alive", 2))
        self.assertEqual(v.vms[0].running_here, False)
        self.assertFalse(v.is_leader)

    def test_wrong_types_and_unknown_states_are_named(self):
        cases = [
            (dict(self.STATUS, term="3"), self.HOSTS, self.VMS, '"term" is str'),
            (dict(self.STATUS, applied_index=True), self.HOSTS, self.VMS, '"applied_index" is bool'),
            (self.STATUS, {"members": [{"name": "h", "state": "zombie", "incarnation": 1}]},
             self.VMS, 'state "zombie"'),
            (self.STATUS, self.HOSTS, {"vms": [{"name": "w"}]}, 'missing "owner"'),
            (self.STATUS, self.HOSTS, {"vms": "none"}, '"vms" is str'),
            ([], self.HOSTS, self.VMS, 'missing "self"'),
        ]
        for status, hosts, vms, needle in cases:
            v = parse_view("host9", status, hosts, vms)
            self.assertTrue(v.contract_error, needle)
            self.assertIn(needle, v.error)
            self.assertIn("host9", v.error)


if __name__ == "__main__":
    unittest.main()
