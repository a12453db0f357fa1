"""The compose file and example configs say what topology.py says, and every
address stays in 198.18.0.0/15. Runs without docker."""

import ipaddress
import os
import re
import shutil
import subprocess
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
DEPLOY = os.path.normpath(os.path.join(HERE, "..", "..", "deploy"))

import topology  # noqa: E402


class GeneratedFilesAreCurrent(unittest.TestCase):
    def test_deploy_files_match_the_topology(self):
        for rel, text in topology.generated_files().items():
            path = os.path.join(DEPLOY, rel)
            with self.subTest(path=rel):
                self.assertTrue(os.path.exists(path), f"{path} missing")
                with open(path) as f:
                    self.assertEqual(f.read(), text,
                                     f"{path} is stale: run python3 tests/chaos/topology.py "
                                     "--write deploy")


class Addresses(unittest.TestCase):
    def test_every_address_in_the_files_is_in_198_18_0_0_15(self):
        allowed = ipaddress.ip_network("198.18.0.0/15")
        found = 0
        for rel, text in topology.generated_files().items():
            for literal in re.findall(r"\b\d+\.\d+\.\d+\.\d+(?:/\d+)?\b", text):
                found += 1
                net = ipaddress.ip_network(literal, strict=False)
                self.assertTrue(net.subnet_of(allowed), f"{rel}: {literal}")
        self.assertGreater(found, 20)

    def test_hosts_have_distinct_addresses_in_their_network(self):
        topology.check_addresses()
        seen = set()
        for i in range(1, topology.MAX_NODES + 1):
            for net in topology.NETWORKS:
                a = topology.host_address(i, net.service)
                self.assertNotIn(a, seen)
                self.assertNotEqual(a, net.gateway)
                seen.add(a)

    def test_network_names_sort_in_interface_order(self):
        # docker names interfaces in the alphabetical order of network names
        keys = [n.key for n in topology.NETWORKS]
        self.assertEqual(keys, sorted(keys))
        self.assertEqual([n.interface for n in topology.NETWORKS], ["eth0", "eth1", "eth2"])


class Config(unittest.TestCase):
    def test_first_host_joins_nobody_and_others_join_it(self):
        first = topology.render_config(1)
        self.assertNotRegex(first, r"(?m)^join\s*=")
        second = topology.render_config(2)
        self.assertIn("join = 198.18.1.11:7402", second)
        for net in topology.NETWORKS:
            self.assertIn(f"[interface {net.interface}]\nservices = {net.service}", second)


@unittest.skipUnless(shutil.which("docker-compose"), "docker-compose not installed")
class ComposeValidates(unittest.TestCase):
    def test_compose_v1_accepts_the_file_with_and_without_kvm(self):
        for files in (["compose.yaml"], ["compose.yaml", "compose.kvm.yaml"]):
            args = ["docker-compose"]
            for f in files:
                args += ["-f", os.path.join(DEPLOY, f)]
            r = subprocess.run(args + ["--profile", "five", "config", "-q"],
                               capture_output=True, text=True, timeout=60)
            self.assertEqual(r.returncode, 0, r.stderr)


if __name__ == "__main__":
    unittest.main()
