"""A ferry cluster in containers, its faults, and how to look at it.

One container per host, named ferry-chaos-hostN, on the three networks of
topology.py with static addresses. Faults act from the outside: docker for
kill/pause/restart/unplug, and host tools (nft, tc) entered into a
container's network namespace with nsenter, so the image stays the image
users run.
"""

import concurrent.futures
import json
import os
import shutil
import subprocess
import sys
import time

import topology
from docker_env import docker, log, run
from invariants import NodeView, Snapshot, parse_view, unreachable

LABEL = "ferry.chaos"
PREFIX = "ferry-chaos"
HERE = os.path.dirname(os.path.abspath(__file__))
NETPROBE = os.path.join(HERE, "netprobe.py")

# A container that only proves it is alive: it rewrites /tmp/tick ten times
# a second. The fault self-test runs it instead of ferryd.
HEARTBEAT = ["sh", "-c", "while :; do date +%s%N > /tmp/tick; sleep 0.1; done"]

QUERY_TIMEOUT = 5.0
PARTITION_TABLE = "ferry_chaos_partition"
LOSS_TABLE = "ferry_chaos_loss"


class Node:
    def __init__(self, index, work_dir):
        self.index = index
        self.name = topology.host_name(index)
        self.container = f"{PREFIX}-{self.name}"
        self.addresses = {net.service: topology.host_address(index, net.service)
                          for net in topology.NETWORKS}
        self.dir = os.path.join(work_dir, self.name)
        self.state_dir = os.path.join(self.dir, "state")
        self.config = os.path.join(self.dir, "ferry.conf")

    def __repr__(self):
        return self.name


def network_name(net):
    return f"{PREFIX}-{net.key}"


def remove_leftovers():
    """Removes containers and networks of earlier runs (ours by label)."""
    ids = docker("ps", "-aq", "--filter", f"label={LABEL}", timeout=30).stdout.split()
    if ids:
        log(f"removing {len(ids)} leftover container(s)")
        docker("rm", "-f", "-v", *ids, timeout=120)
    nets = docker("network", "ls", "-q", "--filter", f"label={LABEL}", timeout=30).stdout.split()
    if nets:
        log(f"removing {len(nets)} leftover network(s)")
        docker("network", "rm", *nets, timeout=60)


def wait_for(what, predicate, timeout, interval=0.2):
    """Polls predicate() until true; raises with `what` after timeout."""
    deadline = time.monotonic() + timeout
    for _ in range(int(timeout / interval) + 2):
        if predicate():
            return time.monotonic()
        if time.monotonic() > deadline:
            break
        time.sleep(interval)
    raise TimeoutError(f"{what}: not within {timeout:.0f}s")


class Cluster:
    def __init__(self, image, n, work_dir, run_id, kvm=None, extra_config=""):
        self.image = image
        self.extra_config = extra_config     # appended to every agent's ferry.conf
        self.work_dir = work_dir
        self.run_id = run_id
        self.nodes = [Node(i, work_dir) for i in range(1, n + 1)]
        self.kvm = os.path.exists("/dev/kvm") if kvm is None else kvm
        self.shared_dir = os.path.join(work_dir, "bootstrap")
        self.t0 = time.monotonic()

    def node(self, name):
        return next(n for n in self.nodes if n.name == name)

    # --- life cycle --------------------------------------------------------

    def create_networks(self):
        for net in topology.NETWORKS:
            docker("network", "create", "--internal", "--subnet", net.subnet,
                   "--gateway", net.gateway, "--label", f"{LABEL}={self.run_id}",
                   network_name(net), timeout=60)

    def _create(self, node, command=None, env=None):
        """docker create + attach to all three networks; not started.
        Networks attached before start get eth0..2 in name order."""
        os.makedirs(node.state_dir, exist_ok=True)
        os.makedirs(self.shared_dir, exist_ok=True)
        with open(node.config, "w") as f:
            f.write(topology.render_config(node.index) + self.extra_config)
        first = topology.NETWORKS[0]
        args = ["create", "--name", node.container, "--hostname", node.name, "--init",
                "--label", f"{LABEL}={self.run_id}",
                "--network", network_name(first), "--ip", node.addresses[first.service],
                "-v", f"{node.state_dir}:{topology.STATE_DIR}",
                "-v", f"{node.config}:{topology.CONFIG_PATH}:ro",
                "-v", f"{self.shared_dir}:{topology.BOOTSTRAP_DIR}",
                "-e", f"FERRY_CLUSTER={topology.CLUSTER_NAME}"]
        for key, value in (env or {}).items():
            args += ["-e", f"{key}={value}"]
        if self.kvm:
            args += ["--device", "/dev/kvm"]
        docker(*args, self.image, *(command or []), timeout=60)
        for net in topology.NETWORKS[1:]:
            docker("network", "connect", "--ip", node.addresses[net.service],
                   network_name(net), node.container, timeout=60)

    def start_heartbeats(self):
        """Containers that run HEARTBEAT instead of ferryd: fault self-test."""
        self.create_networks()
        for node in self.nodes:
            self._create(node, command=HEARTBEAT)
            self.start(node)

    def bootstrap(self, timeout=90.0):
        """Founds the cluster: THE one place that knows the bootstrap flow.

        host1 starts with FERRY_FIRST=1: ferry-container-start runs `ferryd
        init --cluster NAME --state-dir /var/lib/ferry`, leaves cluster.key in
        the shared bootstrap dir, then `ferryd run --config ...`. Every other
        host waits for that key, copies it into its state dir, runs `ferryd
        init ... --join-existing` and `ferryd run`, its config saying
        join = host1:7402 (topology.join_seeds). Change the flow here, in
        deploy/docker-entrypoint.sh and in topology.render_config."""
        self.create_networks()
        os.makedirs(self.shared_dir, exist_ok=True)
        with open(os.path.join(self.shared_dir, "chaos-hosts"), "w") as f:
            f.write(" ".join(str(n.index) for n in self.nodes) + "\n")   # for fake-agent/
        first, rest = self.nodes[0], self.nodes[1:]
        self._create(first, env={"FERRY_FIRST": "1"})
        self.start(first)
        key = os.path.join(self.shared_dir, "cluster.key")

        def key_ready():
            if not self.running(first):
                raise RuntimeError(f"{first} stopped during init: {self.logs_tail(first)}")
            return os.path.exists(key) and os.path.getsize(key) > 0
        wait_for(f"{first} writes the cluster key", key_ready, timeout)
        for node in rest:
            self._create(node)
            self.start(node)

    def teardown(self, log_dir=None):
        """Saves every container's log to log_dir, removes containers and
        networks of this run."""
        for node in self.nodes:
            if log_dir:
                r = docker("logs", "--timestamps", node.container, timeout=30, check=False)
                if r.returncode == 0:
                    os.makedirs(log_dir, exist_ok=True)
                    with open(os.path.join(log_dir, f"{node.name}.log"), "w") as f:
                        f.write(r.stdout + r.stderr)
            docker("rm", "-f", "-v", node.container, timeout=60, check=False)
        for net in topology.NETWORKS:
            docker("network", "rm", network_name(net), timeout=60, check=False)

    # --- container state ---------------------------------------------------

    def inspect(self, node, fmt):
        return docker("inspect", "-f", fmt, node.container, timeout=30).stdout.strip()

    def running(self, node):
        return self.inspect(node, "{{.State.Running}}") == "true"

    def paused(self, node):
        return self.inspect(node, "{{.State.Paused}}") == "true"

    def pid(self, node):
        pid = int(self.inspect(node, "{{.State.Pid}}"))
        if pid <= 0:
            raise RuntimeError(f"{node} has no process (stopped)")
        return pid

    def logs_tail(self, node, lines=5):
        r = docker("logs", "--tail", str(lines), node.container, timeout=30, check=False)
        return " | ".join((r.stdout + r.stderr).strip().splitlines()) or "(no output)"

    def interface_for(self, node, service):
        """The interface holding node's address on service's network. Looked
        up, not assumed: a reconnected network gets a new name."""
        want = node.addresses[service]
        out = self.netns(node, "ip", "-o", "-4", "addr", "show").stdout
        for line in out.splitlines():
            fields = line.split()
            if len(fields) > 3 and fields[3].split("/")[0] == want:
                return fields[1].split("@")[0]
        raise RuntimeError(f"{node} has no interface with {want}")

    # --- faults ------------------------------------------------------------

    def kill(self, node):
        """SIGKILL the agent: the container's process tree dies at once."""
        docker("kill", "-s", "KILL", node.container, timeout=30)
        wait_for(f"{node} stops", lambda: not self.running(node), 30)

    def start(self, node):
        docker("start", node.container, timeout=60)

    def restart(self, node, grace=10):
        """SIGTERM, then SIGKILL after `grace` seconds; start again."""
        docker("restart", "-t", str(grace), node.container, timeout=grace + 60)

    def pause(self, node, attempts=3):
        """docker pause; retried: the cgroup freezer gives up ("unable to
        freeze") when a task, e.g. a KVM vCPU thread, does not stop in time."""
        for attempt in range(1, attempts + 1):
            r = docker("pause", node.container, timeout=30, check=attempt == attempts)
            if r.returncode == 0:
                return
            time.sleep(1.0)

    def unpause(self, node):
        docker("unpause", node.container, timeout=30)

    def disconnect(self, node, services=None):
        """Unplugs node from networks (all by default). Reconnecting gives
        the interface a new name: see docs/chaos.md."""
        for net in topology.NETWORKS:
            if services is None or net.service in services:
                docker("network", "disconnect", network_name(net), node.container, timeout=60)

    def connect(self, node, services=None):
        for net in topology.NETWORKS:
            if services is None or net.service in services:
                docker("network", "connect", "--ip", node.addresses[net.service],
                       network_name(net), node.container, timeout=60)

    def netns(self, node, *cmd, timeout=60, check=True, input=None):
        """Runs a host command inside node's network namespace."""
        return run(["nsenter", f"--net=/proc/{self.pid(node)}/ns/net", *cmd],
                   timeout=timeout, check=check, input=input)

    def _nft_replace(self, node, table, body):
        self.netns(node, "nft", "delete", "table", "inet", table, check=False)
        self.netns(node, "nft", "-f", "-", input=f"table inet {table} {{\n{body}\n}}\n")

    def partition(self, groups):
        """Splits the cluster: nodes in different groups cannot exchange a
        packet on any network. Each node drops what arrives from the other
        side, so senders see timeouts, as on a real partition."""
        for g, group in enumerate(groups):
            others = [a for h, other in enumerate(groups) if h != g
                      for n in other for a in n.addresses.values()]
            for node in group:
                self._nft_replace(node, PARTITION_TABLE,
                                  "  chain input {\n"
                                  "    type filter hook input priority -10; policy accept;\n"
                                  f"    ip saddr {{ {', '.join(others)} }} drop\n  }}")

    def heal_partition(self, nodes=None):
        for node in nodes or self.nodes:
            self.netns(node, "nft", "delete", "table", "inet", PARTITION_TABLE, check=False)

    def set_loss(self, nodes, percent):
        """Drops `percent`% of the packets each node receives on any eth*."""
        if not 0 < percent < 100:
            raise ValueError("loss percent must be in 1..99")
        for node in nodes:
            self._nft_replace(node, LOSS_TABLE,
                              "  chain input {\n"
                              "    type filter hook input priority -5; policy accept;\n"
                              f"    iifname \"eth*\" numgen random mod 100 < {int(percent)} drop\n  }}")

    def clear_loss(self, nodes=None):
        for node in nodes or self.nodes:
            self.netns(node, "nft", "delete", "table", "inet", LOSS_TABLE, check=False)

    def limit_bandwidth(self, nodes, rate, services=None):
        """Token bucket (tc tbf) on the egress of each node's interfaces.
        (tc netem is missing from this kernel, so no added delay.)"""
        for node in nodes:
            for net in topology.NETWORKS:
                if services is None or net.service in services:
                    dev = self.interface_for(node, net.service)
                    self.netns(node, "tc", "qdisc", "replace", "dev", dev, "root", "tbf",
                               "rate", rate, "burst", "32kbit", "latency", "400ms")

    def clear_bandwidth(self, nodes=None):
        for node in nodes or self.nodes:
            for net in topology.NETWORKS:
                try:
                    dev = self.interface_for(node, net.service)
                except RuntimeError:
                    continue
                self.netns(node, "tc", "qdisc", "del", "dev", dev, "root", check=False)

    # --- probes ------------------------------------------------------------

    def probe_connect(self, src, dst, service, count=5, timeout=0.5, port=9):
        """TCP connects from src to dst's address on service's network."""
        r = self.netns(src, sys.executable, NETPROBE, "connect", dst.addresses[service],
                       str(port), str(count), str(timeout),
                       timeout=count * (timeout + 0.2) + 30)
        return json.loads(r.stdout)

    def measure_throughput(self, src, dst, service, nbytes, seconds=30, port=7999):
        """Mbit/s of one TCP stream from src to dst on service's network."""
        addr = dst.addresses[service]
        sink = subprocess.Popen(["nsenter", f"--net=/proc/{self.pid(dst)}/ns/net",
                                 sys.executable, NETPROBE, "sink", addr, str(port), str(seconds)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            ready = sink.stdout.readline()      # the sink says when it listens
            if '"ready"' not in ready:
                raise RuntimeError(f"probe sink did not start: {sink.stderr.read()}")
            r = self.netns(src, sys.executable, NETPROBE, "send", addr, str(port), str(nbytes),
                           str(seconds), timeout=seconds + 30)
            sink.wait(timeout=seconds + 30)
            return json.loads(r.stdout)["mbit_s"]
        finally:
            if sink.poll() is None:
                sink.kill()
                sink.wait(timeout=10)

    def read_tick(self, node):
        """The HEARTBEAT container's last tick, read through /proc (works
        while the container is paused, unlike docker exec)."""
        try:
            with open(f"/proc/{self.pid(node)}/root/tmp/tick") as f:
                return f.read().strip()
        except OSError:
            return ""

    # --- observing agents --------------------------------------------------

    def exec(self, node, *args, timeout=QUERY_TIMEOUT, check=False):
        return docker("exec", node.container, *args, timeout=timeout, check=check)

    def ferryctl_json(self, node, *args, timeout=QUERY_TIMEOUT):
        r = self.exec(node, "ferryctl", "--json", *args, timeout=timeout)
        if r.returncode != 0:
            lines = (r.stderr or r.stdout or "").strip().splitlines()
            raise RuntimeError(f"{node}: ferryctl {' '.join(args)}: "
                               f"{lines[-1] if lines else f'exit {r.returncode}'}")
        return json.loads(r.stdout)

    def view(self, node):
        """One agent's answer to the three queries, in one docker exec."""
        # An agent built before `vm list` existed has no VMs to check; any
        # other failure of the query still counts as not answering.
        script = ("ferryctl --json cluster status && echo '@@ferry-chaos@@' && "
                  "ferryctl --json host list && echo '@@ferry-chaos@@' && "
                  "if ferryctl --json vm list >/tmp/vm-list.out 2>/tmp/vm-list.err; then cat /tmp/vm-list.out; "
                  "else grep -q \"unknown command 'vm'\" /tmp/vm-list.err && echo '{\"vms\": []}'; fi")
        try:
            r = self.exec(node, "sh", "-c", script)
        except RuntimeError as e:               # docker exec itself timed out
            return unreachable(node.name, str(e))
        if r.returncode != 0:
            lines = (r.stderr or r.stdout or "").strip().splitlines()
            return unreachable(node.name, lines[-1] if lines else f"exit {r.returncode}")
        parts = r.stdout.split("@@ferry-chaos@@")
        try:
            if len(parts) != 3:
                raise ValueError(f"expected 3 answers, got {len(parts)}")
            status, hosts, vms = (json.loads(p) for p in parts)
        except ValueError as e:
            return NodeView(node=node.name, ok=False, contract_error=True,
                            error=f"contract: {node.name} answered non-JSON: {e}")
        return parse_view(node.name, status, hosts, vms)

    def observe(self, pool):
        """A Snapshot of every agent, polled in parallel."""
        t = time.monotonic() - self.t0
        views = tuple(pool.map(self.view, self.nodes))
        return Snapshot(t, views)

    def now(self):
        return time.monotonic() - self.t0


def pool_for(cluster):
    return concurrent.futures.ThreadPoolExecutor(max_workers=len(cluster.nodes))


def agent_capabilities(image):
    """What the agent in `image` can do yet, asked without a cluster:
    {"cluster": reason-or-None, "migrate": reason-or-None}; None = supported."""
    def help_of(*cmd):
        r = docker("run", "--rm", "--network", "none", image, *cmd, "--help",
                   timeout=60, check=False)
        return r.returncode, r.stdout + r.stderr
    caps = {}
    rc, text = help_of("ferryd", "init")
    caps["cluster"] = None if rc == 0 and "--cluster" in text else \
        f"ferryd cannot found a cluster yet (`ferryd init --help` says: {text.strip()[:60]!r})"
    rc, text = help_of("ferryctl", "vm", "migrate")
    caps["migrate"] = None if rc == 0 and "migrate" in text else \
        "`ferryctl vm migrate` does not exist yet"
    return caps


def rmtree_quiet(path):
    shutil.rmtree(path, ignore_errors=True)
