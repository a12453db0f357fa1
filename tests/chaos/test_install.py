"""deploy/install.sh installs, is idempotent, honours --prefix and --dry-run,
and never overwrites a config. Runs under --root in a temporary directory,
with stand-in binaries, so it needs neither root nor a build."""

import os
import shutil
import stat
import subprocess
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.normpath(os.path.join(HERE, "..", ".."))
INSTALL = os.path.join(SRC, "deploy", "install.sh")
EXAMPLE = os.path.join(SRC, "deploy", "examples", "host2.conf")


class Install(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="ferry-install-test-")
        self.root = os.path.join(self.tmp, "root")
        self.build = os.path.join(self.tmp, "build")
        os.makedirs(self.build)
        for name in ("ferryd", "ferryctl"):
            path = os.path.join(self.build, name)
            with open(path, "w") as f:
                f.write(f"#!/bin/sh\necho {name}\n")
            os.chmod(path, 0o755)
        os.makedirs(os.path.join(self.build, "guest"))
        guest = os.path.join(self.build, "guest", "ferry-guest.elf")
        with open(guest, "w") as f:
            f.write("not really a kernel\n")
        os.chmod(guest, 0o755)

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def install(self, *extra, ok=True):
        r = subprocess.run(["bash", INSTALL, "--root", self.root, "--build-dir", self.build,
                            "--prefix", "/opt/ferry", *extra],
                           capture_output=True, text=True, timeout=60)
        if ok:
            self.assertEqual(r.returncode, 0, r.stderr)
        return r

    def path(self, rel):
        return os.path.join(self.root, rel.lstrip("/"))

    def mode(self, rel):
        return stat.S_IMODE(os.stat(self.path(rel)).st_mode)

    def test_dry_run_changes_nothing(self):
        r = self.install("--config", EXAMPLE, "--dry-run")
        self.assertIn("would install /opt/ferry/bin/ferryd", r.stdout)
        self.assertFalse(os.path.exists(self.root))

    def test_installs_then_second_run_changes_nothing(self):
        self.install("--config", EXAMPLE)
        self.assertEqual(self.mode("/opt/ferry/bin/ferryd"), 0o755)
        self.assertEqual(self.mode("/opt/ferry/bin/ferryctl"), 0o755)
        self.assertEqual(self.mode("/var/lib/ferry"), 0o700)
        with open(self.path("/etc/ferry/ferry.conf")) as f, open(EXAMPLE) as g:
            self.assertEqual(f.read(), g.read())
        with open(self.path("/etc/systemd/system/ferryd.service")) as f:
            unit = f.read()
        self.assertIn("ExecStart=/opt/ferry/bin/ferryd run --config /etc/ferry/ferry.conf", unit)
        self.assertNotIn("@BINDIR@", unit)
        again = self.install("--config", EXAMPLE)
        self.assertIn("0 change(s) made", again.stdout)

    def test_an_existing_config_is_kept(self):
        os.makedirs(self.path("/etc/ferry"))
        with open(self.path("/etc/ferry/ferry.conf"), "w") as f:
            f.write("# mine\n")
        r = self.install("--config", EXAMPLE)
        self.assertIn("kept /etc/ferry/ferry.conf", r.stdout)
        with open(self.path("/etc/ferry/ferry.conf")) as f:
            self.assertEqual(f.read(), "# mine\n")

    def test_a_changed_binary_is_reinstalled(self):
        self.install()
        with open(os.path.join(self.build, "ferryd"), "a") as f:
            f.write("# new\n")
        r = self.install()
        self.assertIn("install /opt/ferry/bin/ferryd", r.stdout)
        self.assertIn("unchanged /opt/ferry/bin/ferryctl", r.stdout)
        self.assertIn("1 change(s) made", r.stdout)

    def test_bad_arguments_are_refused(self):
        for args in (["--prefix", "relative"], ["--bogus"], ["--config", "/nonexistent"]):
            r = subprocess.run(["bash", INSTALL, "--root", self.root, "--build-dir", self.build,
                                *args], capture_output=True, text=True, timeout=60)
            self.assertNotEqual(r.returncode, 0, args)
            self.assertIn("install.sh:", r.stderr)
        r = subprocess.run(["bash", INSTALL, "--build-dir", os.path.join(self.tmp, "none")],
                           capture_output=True, text=True, timeout=60)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("missing: build first", r.stderr)

    @unittest.skipUnless(shutil.which("systemd-analyze"), "no systemd-analyze")
    def test_the_unit_verifies(self):
        self.install()
        r = subprocess.run(["systemd-analyze", "verify",
                            self.path("/etc/systemd/system/ferryd.service")],
                           capture_output=True, text=True, timeout=60)
        # the binary path is under --root, so "not executable" is expected
        complaints = [ln for ln in (r.stdout + r.stderr).splitlines()
                      if ln.strip() and "is not executable" not in ln]
        self.assertEqual(complaints, [])


if __name__ == "__main__":
    unittest.main()
