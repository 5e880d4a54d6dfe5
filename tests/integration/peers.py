"""The real peers the interop tests compare minirun with: podman, skopeo and umoci.

Podman gets everything of its own under one temp dir: containers.conf (the
settings /work/shared/PEERS.md says this machine needs), storage.conf, --root,
--runroot, --tmpdir, TMPDIR and the network config dir, with the vfs storage
driver. Its containers live in a cgroup parent named for the test run, removed
by cleanup(). Some host paths podman and skopeo write whatever they are told
(the blob info cache in /var/lib/containers/cache, archives unpacked in
/var/tmp, runc's state in /run/runc), so both run in a private mount namespace
where those directories are fresh tmpfs mounts that vanish with it (`sealed`).
umoci writes only the paths it is given.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

PODMAN_CONF = """\
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
netns = "none"
log_driver = "k8s-file"
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
"""

POLICY = {"default": [{"type": "insecureAcceptAnything"}]}


def require(*tools: str) -> None:
    """Skip the calling test, naming what to install, when a peer binary is missing."""
    missing = [tool for tool in tools if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"interop peer(s) not installed: {', '.join(missing)} "
                    f"(apt-get install {' '.join(missing)})")


# Runs as `sh -c` inside `unshare --mount --propagation private`: nothing mounted
# here is seen outside, and everything is gone when the last process exits.
_SEAL = """set -e
mount -t tmpfs -o mode=0755,size=64m tmpfs /run
mount -t tmpfs -o mode=1777,size=512m tmpfs /var/tmp
if [ -d /var/lib/containers ]; then mount -t tmpfs -o mode=0700,size=64m tmpfs /var/lib/containers
else mount -t tmpfs -o mode=0755,size=64m tmpfs /var/lib; fi
exec "$@"
"""
_SEALED_DIRS = ("/run", "/var/tmp", "/var/lib")


def sealed(argv: list[str]) -> list[str]:
    """argv in a private mount namespace with fresh /run, /var/tmp and /var/lib/containers;
    skips the test when a path argv names would be hidden by them."""
    for arg in argv:
        path = arg.split(":")[0] if arg.startswith("/") else arg.split(":")[1] if ":/" in arg else None
        resolved = str(Path(path).resolve()) if path else ""
        if any(resolved == d or resolved.startswith(d + "/") for d in _SEALED_DIRS):
            pytest.skip(f"{resolved} lies under {', '.join(_SEALED_DIRS)}, which the peers get "
                        "fresh and empty; point TMPDIR (pytest's temp dir) elsewhere")
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", _SEAL, "sh", *argv]


def _run(argv: list[str], env: dict | None = None, timeout: float = 120) -> str:
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=timeout)
    if proc.returncode != 0:
        shown = argv[argv.index(_SEAL) + 2:] if _SEAL in argv else argv
        raise AssertionError(f"{' '.join(shown)} -> {proc.returncode}\n{proc.stderr}{proc.stdout}")
    return proc.stdout


class Podman:
    """podman with a private store under base; call cleanup() when done."""

    def __init__(self, base: Path):
        require("podman", "runc", "unshare")
        self.base = base
        self.cgroup_parent = f"minirun-interop-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        for sub in ("root", "runroot", "tmp", "libpod-tmp", "networks"):
            (base / sub).mkdir(parents=True, exist_ok=True)
        (base / "containers.conf").write_text(
            PODMAN_CONF + f'image_copy_tmp_dir = "{base / "tmp"}"\n')
        (base / "storage.conf").write_text(
            f'[storage]\ndriver = "vfs"\nrunroot = "{base / "runroot"}"\ngraphroot = "{base / "root"}"\n')
        self.env = dict(os.environ, CONTAINERS_CONF=str(base / "containers.conf"),
                        CONTAINERS_STORAGE_CONF=str(base / "storage.conf"), TMPDIR=str(base / "tmp"))

    def __call__(self, *args: str) -> str:
        return _run(sealed(["podman", "--root", str(self.base / "root"), "--runroot", str(self.base / "runroot"),
                            "--tmpdir", str(self.base / "libpod-tmp"), "--storage-driver", "vfs",
                            "--network-config-dir", str(self.base / "networks"), *args]),
                    env=self.env)

    def load(self, archive: str) -> list[str]:
        """The names podman reports for what it loaded."""
        out = self("load", "-q", "-i", archive)
        return [line.split(": ", 1)[1].strip() for line in out.splitlines() if ": " in line]

    def image_id(self, name: str) -> str:
        """The image id as 'sha256:<hex>' (the config digest)."""
        return "sha256:" + self("image", "inspect", "--format", "{{.Id}}", name).strip()

    def run(self, image: str, *cmd: str) -> str:
        # runc cannot run without a cgroup, so give the container one under a parent we remove
        return self("run", "--rm", "--network", "none", "--cgroups", "no-conmon",
                    "--cgroup-parent", "/" + self.cgroup_parent, image, *cmd)

    def save(self, image: str, dest: str, fmt: str) -> None:
        self("save", "-q", "--format", fmt, "-o", dest, image)

    def cleanup(self) -> None:
        """Remove podman's containers and images, unmount anything left under base, delete base."""
        for args in (("rm", "--all", "--force"), ("rmi", "--all", "--force")):
            try:
                self(*args)
            except AssertionError:
                pass
        for mount_point in reversed(mounts_under(self.base)):
            subprocess.run(["umount", "-l", mount_point], capture_output=True)
        remove_cgroups(self.cgroup_parent)
        shutil.rmtree(self.base, ignore_errors=True)


def remove_cgroups(name: str) -> None:
    """rmdir the cgroup `name` (and what podman left below it) in every hierarchy, v1 and v2."""
    root = Path("/sys/fs/cgroup")
    for top in [*root.glob(name), *root.glob(f"*/{name}")]:
        for directory, _subdirs, _files in sorted(os.walk(top), key=lambda w: -len(w[0])):
            try:
                os.rmdir(directory)
            except OSError:
                pass


def mounts_under(base: Path) -> list[str]:
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4] for line in f]
    return [p for p in points if p == str(base) or p.startswith(str(base) + "/")]


# ---------------------------------------------------------------- skopeo

def skopeo(*args: str) -> str:
    require("skopeo", "unshare")
    return _run(sealed(["skopeo", *args]))


def skopeo_inspect(transport_ref: str) -> dict:
    return json.loads(skopeo("inspect", transport_ref))


def skopeo_raw(transport_ref: str) -> dict:
    """The manifest exactly as stored, parsed."""
    return json.loads(skopeo("inspect", "--raw", transport_ref))


def skopeo_config_digest(transport_ref: str) -> str:
    return skopeo_raw(transport_ref)["config"]["digest"]


def skopeo_copy(src: str, dest: str, policy_dir: Path) -> None:
    policy = policy_dir / "policy.json"
    policy.write_text(json.dumps(POLICY))
    skopeo("copy", "--quiet", "--policy", str(policy), src, dest)


# ---------------------------------------------------------------- umoci

def umoci(*args: str) -> str:
    require("umoci")
    return _run(["umoci", *args])


def umoci_unpack(layout: Path, tag: str, bundle: Path) -> Path:
    """Unpack an image of an OCI layout into a runtime bundle; returns its rootfs."""
    umoci("unpack", "--image", f"{layout}:{tag}", str(bundle))
    return bundle / "rootfs"


def layout_config_digest(layout: Path, tag: str) -> str:
    """The config digest of the image tagged `tag` in an OCI layout, read from its blobs."""
    index = json.loads((layout / "index.json").read_text())
    entry = next(m for m in index["manifests"]
                 if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag)
    manifest = json.loads((layout / "blobs" / "sha256" / entry["digest"][7:]).read_text())
    return manifest["config"]["digest"]
