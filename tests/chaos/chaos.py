#!/usr/bin/env python3
"""ferry's chaos suite: real agents in containers, real faults, invariants.

    python3 tests/chaos/chaos.py --build-dir build            everything
    python3 tests/chaos/chaos.py --build-dir build --quick    the CI subset
    python3 tests/chaos/chaos.py --list

Set-up: starts dockerd if none runs (and stops it at the end), makes the
debian:bookworm-slim base with debootstrap if missing, builds the ferry image
(deploy/Dockerfile's runtime stage + ferryd/ferryctl from --build-dir), then:
  1. fault self-test: heartbeat containers; each primitive must take effect;
  2. scenarios: a ferry cluster; each fault while invariants are polled.
Each check prints one row; the last line is "N passed, N failed, N skipped".
Everything started is removed at the end; container logs go to --log-dir.
Python 3 standard library only. See docs/chaos.md.
"""

import argparse
import fcntl
import os
import signal
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import cluster as cl  # noqa: E402
import docker_env  # noqa: E402
import migration  # noqa: E402
import primitives  # noqa: E402
import report  # noqa: E402
import scenarios  # noqa: E402
import topology  # noqa: E402
from report import FAIL, SKIP, Row  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_DIR = os.path.normpath(os.path.join(HERE, "..", ".."))
FAKE_AGENT = os.path.join(HERE, "fake-agent")
LOCK_PATH = "/run/lock/ferry-chaos.lock" if os.path.isdir("/run/lock") else "/tmp/ferry-chaos.lock"


def parse_args(argv):
    ap = argparse.ArgumentParser(description="ferry chaos suite", epilog="see docs/chaos.md")
    ap.add_argument("--build-dir", default=os.path.join(SOURCE_DIR, "build"),
                    help="where ferryd and ferryctl were built (default: build)")
    ap.add_argument("--fake-agent", action="store_true",
                    help="use the scripted stand-in agent of tests/chaos/fake-agent "
                         "(tests the harness itself; host1 leads forever)")
    ap.add_argument("--from-source", action="store_true",
                    help="build the image with deploy/Dockerfile's compile stage instead")
    ap.add_argument("--quick", action="store_true",
                    help="CI subset: fault self-test + " + ", ".join(
                        s.name for s in scenarios.SCENARIOS if s.quick))
    ap.add_argument("--only", metavar="NAME[,NAME]",
                    help="run only these scenarios (names from --list)")
    ap.add_argument("--no-primitives", action="store_true", help="skip the fault self-test")
    ap.add_argument("--primitives-only", action="store_true",
                    help="only the fault self-test (no ferryd needed)")
    ap.add_argument("--nodes", type=int, default=topology.DEFAULT_NODES,
                    help=f"agents, {topology.MIN_NODES}..{topology.MAX_NODES}")
    ap.add_argument("--hold", type=float, default=8.0, help="seconds each fault lasts")
    ap.add_argument("--leader-bound", type=float, default=10.0,
                    help="seconds the cluster may go without a leader")
    ap.add_argument("--converge-timeout", type=float, default=60.0,
                    help="seconds after a heal for the cluster to be whole")
    ap.add_argument("--poll", type=float, default=0.2, help="seconds between polls")
    ap.add_argument("--log-dir", help="container logs (default: BUILD_DIR/chaos-logs)")
    ap.add_argument("--keep", action="store_true", help="leave containers and networks up")
    ap.add_argument("--skip-without-docker", action="store_true",
                    help="if dockerd cannot start, say SKIPPED and exit 0 (CI)")
    ap.add_argument("--list", action="store_true", help="list checks and scenarios")
    args = ap.parse_args(argv)
    if not topology.MIN_NODES <= args.nodes <= topology.MAX_NODES:
        ap.error(f"--nodes must be {topology.MIN_NODES}..{topology.MAX_NODES}")
    args.log_dir = args.log_dir or os.path.join(args.build_dir, "chaos-logs")
    return args


def chosen_scenarios(args):
    if args.primitives_only:
        return []
    if args.only:
        names = set(args.only.split(","))
        unknown = names - {s.name for s in scenarios.SCENARIOS}
        if unknown:
            raise SystemExit(f"chaos: unknown scenario(s): {', '.join(sorted(unknown))}")
        return [s for s in scenarios.SCENARIOS if s.name in names]
    if args.quick:
        return [s for s in scenarios.SCENARIOS if s.quick]
    return list(scenarios.SCENARIOS)


def list_all():
    for name, fault, _ in primitives.CHECKS:
        print(f"{name:<28} {fault}")
    for s in scenarios.SCENARIOS:
        tags = ",".join(t for t, on in (("quick", s.quick), ("needs-migrate", s.needs == "migrate"))
                        if on)
        print(f"{s.name:<28} {s.fault}{'  [' + tags + ']' if tags else ''}")


def on_sigterm(signum, frame):
    # `timeout` and CI stop us with SIGTERM: unwind so every finally: tears down
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv=None):
    signal.signal(signal.SIGTERM, on_sigterm)
    args = parse_args(argv)
    if args.list:
        list_all()
        return 0
    try:
        os.makedirs(args.log_dir, exist_ok=True)
        if not os.access(args.log_dir, os.W_OK):
            raise PermissionError(args.log_dir)
    except OSError:
        args.log_dir = tempfile.mkdtemp(prefix="ferry-chaos-logs-")
        report.note(f"{args.log_dir} holds the logs: the log dir asked for is not writable")
    # one run per machine: runs share container names, subnets and leftovers
    lock = os.open(LOCK_PATH, os.O_RDONLY | os.O_CREAT, 0o644)   # flock needs no write
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        print(f"chaos: another chaos run holds {LOCK_PATH}", file=sys.stderr)
        return 2
    work = tempfile.mkdtemp(prefix="ferry-chaos-")
    run_id = f"{os.getpid()}-{int(time.time())}"
    dockerd = docker_env.Dockerd(args.log_dir)
    try:
        dockerd.ensure()
    except docker_env.DockerUnavailable as e:
        print(f"chaos: SKIPPED: dockerd cannot start: {e}", flush=True)
        cl.rmtree_quiet(work)
        if args.log_dir.startswith(tempfile.gettempdir() + "/ferry-chaos-logs-"):
            cl.rmtree_quiet(args.log_dir)
        return 0 if args.skip_without_docker else 2

    rows = []
    timings = {"dockerd start": dockerd.started_s} if dockerd.proc else {}
    emit = report.emit
    try:
        cl.remove_leftovers()
        timings["base image"] = docker_env.ensure_base_image(work)
        binaries = FAKE_AGENT if args.fake_agent else args.build_dir
        image, timings["ferry image"] = docker_env.build_image(
            SOURCE_DIR, binaries, work, from_source=args.from_source)
        print(report.header(), flush=True)

        if not args.no_primitives:
            c = cl.Cluster(image, 3, os.path.join(work, "heartbeat"), run_id)
            t0 = time.monotonic()
            try:
                c.start_heartbeats()
                timings["heartbeat cluster up"] = time.monotonic() - t0
                rows += primitives.run_primitives(c, emit)
            except Exception as e:  # noqa: BLE001
                rows.append(emit(Row("primitive/setup", "3 heartbeat containers", FAIL,
                                     detail=f"{type(e).__name__}: {e}")))
            finally:
                if not args.keep:
                    c.teardown(os.path.join(args.log_dir, "heartbeat"))

        chosen = chosen_scenarios(args)
        if chosen:
            rows += run_cluster(args, image, work, run_id, chosen, timings, emit)
    finally:
        report.note("timings: " + ", ".join(
            f"{k} {v:.1f}s" + (" (cached)" if k == "base image" and v == 0 else "")
            for k, v in timings.items()))
        report.note(f"logs: {args.log_dir}")
        if not args.keep:
            dockerd.stop()
        cl.rmtree_quiet(work)
    print(report.summary(rows), flush=True)
    return 1 if any(r.result == FAIL for r in rows) else 0


def run_cluster(args, image, work, run_id, chosen, timings, emit):
    caps = cl.agent_capabilities(image)
    if caps["cluster"]:
        return [emit(Row(s.name, s.fault, SKIP, detail=caps["cluster"])) for s in chosen]
    settings = scenarios.Settings(hold=args.hold, leader_bound=args.leader_bound,
                                  converge_timeout=args.converge_timeout, poll=args.poll)
    c = cl.Cluster(image, args.nodes, os.path.join(work, "cluster"), run_id,
                   extra_config=migration.AGENT_CONFIG)
    t0 = time.monotonic()
    try:
        try:
            c.bootstrap()
            run = scenarios.Run(c, settings)
            took, reasons = run.wait_converged(settings.converge_timeout)
            if took is None:
                raise RuntimeError("cluster never whole: " + "; ".join(reasons[:3]))
            timings["cluster up"] = time.monotonic() - t0
            report.note(f"{args.nodes} agents up; workload: {scenarios.create_workload(run)}")
        except Exception as e:  # noqa: BLE001 - every scenario fails with the reason
            why = f"cluster set-up: {type(e).__name__}: {e}"
            for node in c.nodes:
                try:
                    if not c.running(node):
                        why += f"; {node} exited: {c.logs_tail(node, 3)}"
                except RuntimeError:
                    pass
            return [emit(Row(s.name, s.fault, SKIP if s.needs != "cluster" and caps[s.needs]
                             else FAIL, detail=why)) for s in chosen]
        return scenarios.run_scenarios(run, chosen, caps, emit)
    finally:
        if not args.keep:
            c.teardown(os.path.join(args.log_dir, "cluster"))


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt as e:      # everything was torn down on the way out
        print(f"chaos: interrupted ({e or 'ctrl-c'})", file=sys.stderr)
        sys.exit(130)
