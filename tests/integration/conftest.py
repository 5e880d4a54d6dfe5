"""Integration tests: as root, against the real kernel (overlayfs, namespaces).

Every test gets its own MINIRUN_ROOT under a temp dir (the `mr` fixture) and
runs the real CLI in a subprocess. After each test the fixture checks that no
overlay mount and no container process is left behind, and removes the store.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

if os.geteuid() != 0:
    pytest.skip("integration tests need root (overlayfs, namespaces)", allow_module_level=True)


@pytest.fixture(scope="session")
def fixtures(tmp_path_factory) -> Path:
    """Fixture images built fresh from rootfs-fixtures/ for this session."""
    out = tmp_path_factory.mktemp("fixtures")
    subprocess.run([sys.executable, str(REPO / "rootfs-fixtures" / "build.py"), str(out)],
                   check=True, stdout=subprocess.DEVNULL)
    return out


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str

    @property
    def lines(self) -> list[str]:
        return self.stdout.splitlines()


class Minirun:
    """The CLI against one private store."""

    def __init__(self, root: Path, fixtures: Path):
        self.root = root
        self.fixtures = fixtures
        self.env = dict(os.environ, MINIRUN_ROOT=str(root))
        self.env.pop("MINIRUN_OVERLAY_API", None)

    def __call__(self, *args: str, input: str | None = None, env: dict | None = None,
                 timeout: float = 60, prefix: tuple[str, ...] = (), **kwargs) -> Result:
        proc = subprocess.run([*prefix, sys.executable, "-m", "minirun", *args], input=input,
                              capture_output=True, text=True, timeout=timeout,
                              env=dict(self.env, **(env or {})), **kwargs)
        return Result(proc.returncode, proc.stdout, proc.stderr)

    def ok(self, *args: str, **kwargs) -> Result:
        result = self(*args, **kwargs)
        assert result.returncode == 0, f"minirun {' '.join(args)} -> {result.returncode}\n{result.stderr}"
        return result

    def popen(self, *args: str, **kwargs) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "minirun", *args], env=self.env, **kwargs)

    def load(self, *names: str, fmt: str = "oci") -> Result:
        """Load fixture images by name in one format: oci (layout dir), oci-archive or docker-archive."""
        paths = [self.fixture_path(name, fmt) for name in names]
        return self.ok("load", *paths)

    def fixture_path(self, name: str, fmt: str = "oci") -> str:
        suffix = "" if fmt == "oci" else ".tar"
        return str(self.fixtures / fmt / f"{name}{suffix}")

    def inspect(self, container: str) -> dict:
        import json
        return json.loads(self.ok("inspect", container).stdout)[0]

    def only_state(self) -> dict:
        """The State (inspect's) of the one container in the store."""
        ids = self.ok("ps", "-a", "-q").stdout.split()
        assert len(ids) == 1, ids
        return self.inspect(ids[0])["State"]

    def running_state(self, name: str, timeout: float = 10) -> dict:
        """The container's State once it runs with a pid."""
        import json
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            result = self("inspect", name)
            if result.returncode == 0:
                state = json.loads(result.stdout)[0]["State"]
                if state.get("status") == "running" and state.get("pid"):
                    return state
            time.sleep(0.05)
        raise AssertionError(f"container {name} never reached running")

    def layer_dirs(self) -> list[str]:
        return sorted(os.listdir(self.root / "layers" / "sha256"))


def overlay_mounts_under(root: Path) -> list[str]:
    with open("/proc/self/mountinfo") as f:
        return [line for line in f if " - overlay " in line and str(root) in line]


def processes_using(root: Path) -> list[int]:
    """Container processes whose cwd or root lies in this store (they run in a mount ns we cannot see)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes()
        except OSError:
            continue
        if f"MINIRUN_ROOT={root}".encode() in environ and int(pid) != os.getpid():
            found.append(int(pid))
    return found


@pytest.fixture
def mr(tmp_path, fixtures) -> Minirun:
    root = tmp_path / "store"
    cli = Minirun(root, fixtures)
    cli.env["DOCKER_CONFIG"] = str(tmp_path / "docker-config")    # no test reads or writes ~/.docker
    yield cli
    if (root / "containers").is_dir():
        # the product's own cleanup: kills what runs, gives back cgroups and addresses
        ids = [name for name in os.listdir(root / "containers") if len(name) == 64]
        if ids:
            cli("rm", "-f", *ids)
    deadline = time.monotonic() + 5
    while processes_using(root) and time.monotonic() < deadline:
        time.sleep(0.05)
    leftovers = processes_using(root)
    for pid in leftovers:
        try:
            os.kill(pid, 9)
        except ProcessLookupError:
            pass
    leaks = overlay_mounts_under(root)
    if not leaks:
        from minirun.lib.fsutil import remove_tree
        remove_tree(str(root))          # iterative: tests build trees deeper than rmtree recurses
    assert not leaks, f"overlay mounts leaked on the host: {leaks}"
    assert not leftovers, f"minirun processes left running: {leftovers}"


@pytest.fixture
def registry(tmp_path):
    """A real registry (Debian's docker-registry) on 127.0.0.1, for this test alone."""
    from .registry import Registry
    reg = Registry(tmp_path / "registry")
    yield reg
    reg.stop()


@pytest.fixture
def bridge_net(mr):
    """A bridge and /24 of this test's own, passed to minirun through its environment.
    The bridge is deleted afterwards whatever happened."""
    from . import netfixtures
    subnet = netfixtures.free_subnet()
    if subnet is None:
        pytest.skip("no free 10.X.Y.0/24 on this host")
    name = netfixtures.bridge_name()
    assert name not in netfixtures.link_names()
    mr.env.update(MINIRUN_BRIDGE=name, MINIRUN_BRIDGE_SUBNET=subnet)
    try:
        yield name, subnet
    finally:
        netfixtures.delete_link(name)
    assert name not in netfixtures.link_names(), f"bridge {name} is still there"
