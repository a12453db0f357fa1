"""Docker for the chaos suite: the daemon, the Debian base image, the ferry image.

Every command has a deadline. Nothing here reaches a registry: the base image
debian:bookworm-slim is made locally with debootstrap (from the Debian mirror)
and `docker import`, so deploy/Dockerfile builds unchanged here and for users
who can pull the real one.
"""

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

BASE_IMAGE = "debian:bookworm-slim"
RUNTIME_IMAGE = "ferry-chaos-runtime:latest"
IMAGE = "ferry-chaos:latest"
IMAGE_LABEL = "ferry.chaos.image=1"
DEBIAN_MIRROR = os.environ.get("FERRY_DEBIAN_MIRROR", "http://deb.debian.org/debian")

# dockerd as the harness starts it: no default bridge (it would take
# 172.17.0.0/16) and any network made without a subnet lands in 198.19/16.
DOCKERD_ARGS = ["--bridge=none", "--default-address-pool", "base=198.19.0.0/16,size=24"]


class DockerUnavailable(Exception):
    """dockerd is not there and cannot be started; the reason says why."""


def log(msg):
    print(f"chaos: {msg}", file=sys.stderr, flush=True)


def run(args, timeout, check=True, input=None, capture=True):
    """Runs a command with a deadline; returns CompletedProcess (text)."""
    try:
        r = subprocess.run(args, input=input, timeout=timeout, text=True,
                           stdout=subprocess.PIPE if capture else None,
                           stderr=subprocess.PIPE if capture else None)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"timed out after {timeout}s: {' '.join(args)}")
    if check and r.returncode != 0:
        err = (r.stderr or "").strip().splitlines()
        raise RuntimeError(f"exit {r.returncode}: {' '.join(args)}: "
                           f"{err[-1] if err else '(no stderr)'}")
    return r


def docker(*args, timeout=60, check=True, input=None):
    return run(["docker", *args], timeout=timeout, check=check, input=input)


def docker_works(timeout=10):
    try:
        return run(["docker", "info", "--format", "{{.ServerVersion}}"], timeout=timeout,
                   check=False).returncode == 0
    except (RuntimeError, FileNotFoundError):
        return False


class Dockerd:
    """The docker daemon for one run: the one already running, or one we
    start (and stop again in stop())."""

    def __init__(self, log_dir, start_timeout=60.0):
        self.proc = None
        self.log_path = os.path.join(log_dir, "dockerd.log")
        self.start_timeout = start_timeout
        self.started_s = 0.0

    def ensure(self):
        if shutil.which("docker") is None:
            raise DockerUnavailable("no docker client (apt-get install docker.io)")
        if docker_works():
            log("using the running dockerd")
            return self
        if shutil.which("dockerd") is None:
            raise DockerUnavailable("no dockerd binary (apt-get install docker.io)")
        if os.geteuid() != 0:
            r = run(["docker", "info"], timeout=10, check=False)
            why = (r.stderr or "").strip().splitlines()
            raise DockerUnavailable(f"docker info fails ({why[-1] if why else r.returncode}) "
                                    "and starting dockerd needs root")
        t0 = time.monotonic()
        logf = open(self.log_path, "ab")
        self.proc = subprocess.Popen(["dockerd", *DOCKERD_ARGS], stdout=logf, stderr=logf,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        logf.close()
        deadline = t0 + self.start_timeout
        for _ in range(int(self.start_timeout / 0.25) + 1):
            if self.proc.poll() is not None:
                raise DockerUnavailable(f"dockerd exited with {self.proc.returncode}: "
                                        f"{self._log_tail()}")
            if docker_works(timeout=5):
                self.started_s = time.monotonic() - t0
                log(f"started dockerd (pid {self.proc.pid}) in {self.started_s:.1f}s")
                return self
            if time.monotonic() > deadline:
                break
            time.sleep(0.25)
        self.stop()
        raise DockerUnavailable(f"dockerd not ready after {self.start_timeout:.0f}s: "
                                f"{self._log_tail()}")

    def _log_tail(self):
        try:
            with open(self.log_path, errors="replace") as f:
                lines = [ln.strip() for ln in f if ln.strip()]
            return lines[-1] if lines else "(empty log)"
        except OSError as e:
            return f"(no log: {e})"

    def stop(self, timeout=30.0):
        """Stops dockerd if this run started it."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            log(f"dockerd did not stop in {timeout:.0f}s; killing it")
            self.proc.kill()
            self.proc.wait(timeout=10)
        log("stopped dockerd")


def image_exists(ref):
    return docker("image", "inspect", ref, timeout=30, check=False).returncode == 0


def ensure_base_image(work_dir, timeout=600):
    """debian:bookworm-slim, made with debootstrap unless already there.
    Returns the seconds it took (0.0 when cached)."""
    if image_exists(BASE_IMAGE):
        log(f"base image {BASE_IMAGE} is cached")
        return 0.0
    if shutil.which("debootstrap") is None:
        raise RuntimeError(f"{BASE_IMAGE} missing and no debootstrap to make it "
                           "(apt-get install debootstrap)")
    t0 = time.monotonic()
    root = tempfile.mkdtemp(prefix="ferry-rootfs-", dir=work_dir)
    try:
        log(f"debootstrap --variant=minbase bookworm from {DEBIAN_MIRROR}")
        run(["debootstrap", "--variant=minbase", "bookworm", root, DEBIAN_MIRROR],
            timeout=timeout)
        # what the real slim image leaves out: downloaded packages and lists
        for sub in ("var/cache/apt/archives", "var/lib/apt/lists"):
            d = os.path.join(root, sub)
            for name in os.listdir(d):
                p = os.path.join(d, name)
                if os.path.isfile(p):
                    os.unlink(p)
        tar = subprocess.Popen(["tar", "-C", root, "-c", "."], stdout=subprocess.PIPE)
        try:
            r = subprocess.run(["docker", "import", "-c", 'CMD ["bash"]', "-", BASE_IMAGE],
                               stdin=tar.stdout, capture_output=True, text=True,
                               timeout=timeout)
        finally:
            tar.stdout.close()
            tar.wait(timeout=timeout)
        if r.returncode != 0 or tar.returncode != 0:
            raise RuntimeError(f"docker import failed: {r.stderr.strip()}")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    took = time.monotonic() - t0
    log(f"made {BASE_IMAGE} in {took:.1f}s")
    return took


def _build(context, dockerfile, tag, timeout, target=None, log_path=None):
    args = ["docker", "build", "--network", "host", "-f", dockerfile, "-t", tag]
    if target:
        args += ["--target", target]
    r = run(args + [context], timeout=timeout, check=False)
    if log_path:
        with open(log_path, "a") as f:
            f.write(f"$ {' '.join(args)} {context}\n{r.stdout}\n{r.stderr}\n")
    if r.returncode != 0:
        tail = "\n".join((r.stdout + r.stderr).strip().splitlines()[-15:])
        raise RuntimeError(f"docker build of {tag} failed:\n{tail}")


def build_image(source_dir, build_dir, work_dir, from_source=False, timeout=1200):
    # build_dir: any directory holding executables named ferryd and ferryctl
    """The ferry image the cluster runs; returns (tag, seconds).

    Default: deploy/Dockerfile's runtime stage plus ferryd and ferryctl from
    build_dir, so the containers run the binaries ctest just tested. With
    from_source, the whole Dockerfile (compiles inside the build stage) from
    the tracked and untracked-but-not-ignored files of the source tree."""
    t0 = time.monotonic()
    log_path = os.path.join(work_dir, "docker-build.log")
    dockerfile = os.path.join(source_dir, "deploy", "Dockerfile")
    if from_source:
        files = run(["git", "-C", source_dir, "ls-files", "-co", "--exclude-standard", "-z"],
                    timeout=60).stdout.split("\0")
        ctx = tempfile.mkdtemp(prefix="ferry-ctx-", dir=work_dir)
        for rel in filter(None, files):
            src = os.path.join(source_dir, rel)
            if os.path.isfile(src):
                os.makedirs(os.path.dirname(os.path.join(ctx, rel)), exist_ok=True)
                shutil.copy2(src, os.path.join(ctx, rel))
        _build(ctx, os.path.join(ctx, "deploy", "Dockerfile"), IMAGE, timeout, log_path=log_path)
        shutil.rmtree(ctx, ignore_errors=True)
    else:
        binaries = [os.path.join(build_dir, b) for b in ("ferryd", "ferryctl")]
        for b in binaries:
            if not os.access(b, os.X_OK):
                raise RuntimeError(f"{b} missing: build first (cmake -S . -B build && "
                                   "make -C build) or pass --build-dir")
        ctx = tempfile.mkdtemp(prefix="ferry-ctx-", dir=work_dir)
        os.makedirs(os.path.join(ctx, "deploy"))
        shutil.copy2(os.path.join(source_dir, "deploy", "docker-entrypoint.sh"),
                     os.path.join(ctx, "deploy"))
        _build(ctx, dockerfile, RUNTIME_IMAGE, timeout, target="runtime", log_path=log_path)
        for b in binaries:
            shutil.copy2(b, ctx)
        guest = os.path.join(build_dir, "guest", "ferry-guest.elf")
        if not os.path.isfile(guest):
            raise RuntimeError(f"{guest} missing: build first (make -C {build_dir})")
        shutil.copy2(guest, ctx)
        with open(os.path.join(ctx, "Dockerfile.binaries"), "w") as f:
            f.write(f"FROM {RUNTIME_IMAGE}\nLABEL {IMAGE_LABEL}\n"
                    "COPY ferryd ferryctl /usr/local/bin/\n"
                    "COPY ferry-guest.elf /usr/local/lib/ferry/\n")
        _build(ctx, os.path.join(ctx, "Dockerfile.binaries"), IMAGE, timeout, log_path=log_path)
        shutil.rmtree(ctx, ignore_errors=True)
        # the image this build replaced is now untagged: drop it (ours only)
        docker("image", "prune", "-f", "--filter", f"label={IMAGE_LABEL}", timeout=120,
               check=False)
    took = time.monotonic() - t0
    log(f"built {IMAGE} in {took:.1f}s ({'from source' if from_source else 'host binaries'})")
    return IMAGE, took
