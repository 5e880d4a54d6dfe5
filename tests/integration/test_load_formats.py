"""minirun load of what other tools write (issue 17.1), built by hand from the specs
where the tool is not here (Docker 25+, BuildKit), and Docker's ways of handing
load an archive: -i/--input, `load < FILE`, a pipe and `load -`."""

from __future__ import annotations

import hashlib
import sys
import json
import os
import subprocess
import tarfile
from pathlib import Path

import pytest

from . import peers
from .conftest import REPO
from .imagebuild import busybox_layer, entry, layer_tar

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"


class Blobs:
    """blobs/sha256/ of a layout being written, and the image documents in it."""

    def __init__(self, root: Path):
        self.root = root
        (root / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)

    def put(self, data: bytes, media_type: str, **extra) -> dict:
        digest = hashlib.sha256(data).hexdigest()
        (self.root / "blobs" / "sha256" / digest).write_bytes(data)
        return {"mediaType": media_type, "digest": "sha256:" + digest, "size": len(data), **extra}

    def image(self, layers: list[bytes], cmd: list[str], arch: str = "amd64") -> tuple[dict, dict, list[dict]]:
        """(manifest descriptor, config descriptor, layer descriptors) of one image;
        layers are stored uncompressed, as Docker 25 saves them."""
        descs = [self.put(raw, "application/vnd.oci.image.layer.v1.tar") for raw in layers]
        config = {"architecture": arch, "os": "linux", "config": {"Cmd": cmd},
                  "rootfs": {"type": "layers", "diff_ids": [d["digest"] for d in descs]}}
        cfg = self.put(json.dumps(config).encode(), "application/vnd.oci.image.config.v1+json")
        manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": cfg, "layers": descs}
        return self.put(json.dumps(manifest).encode(), OCI_MANIFEST), cfg, descs


def tar_dir(source: Path, archive: Path) -> Path:
    with tarfile.open(archive, "w") as tar:
        for name in sorted(os.listdir(source)):
            tar.add(source / name, arcname=name)
    return archive


def hello_layer(word: str) -> bytes:
    return layer_tar([entry("hello", data=f"{word}\n".encode())])


def docker25_archive(tmp_path: Path, images: list[tuple[str, list[str]]], index_lists: bool) -> tuple[Path, list]:
    """A `docker save` archive of Docker 25+: an OCI layout (index.json, oci-layout,
    blobs/) and manifest.json naming the same blobs. images: (word, RepoTags). With
    index_lists False, index.json says "manifests": null, as for an image saved by id."""
    root = tmp_path / "docker25"
    blobs = Blobs(root)
    base = busybox_layer()
    entries, index, configs = [], [], []
    for word, tags in images:
        man, cfg, layers = blobs.image([base, hello_layer(word)], ["cat", "/hello"])
        configs.append(cfg["digest"])
        entries.append({"Config": f"blobs/sha256/{cfg['digest'][7:]}", "RepoTags": tags,
                        "Layers": [f"blobs/sha256/{d['digest'][7:]}" for d in layers]})
        for tag in tags:
            index.append(dict(man, annotations={"io.containerd.image.name": f"docker.io/{tag}",
                                                "org.opencontainers.image.ref.name": tag.rsplit(":", 1)[1]}))
    (root / "manifest.json").write_text(json.dumps(entries))
    (root / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    (root / "index.json").write_text(json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX,
                                                 "manifests": index if index_lists else None}))
    return tar_dir(root, tmp_path / "docker25.tar"), configs


def test_a_docker_25_archive_of_an_image_saved_by_id_loads(mr, tmp_path):
    """Docker 25+ writes "manifests": null for `docker save IMAGE_ID`; Docker loads it."""
    archive, configs = docker25_archive(tmp_path, [("by-id", [])], index_lists=False)
    out = mr.ok("load", str(archive))
    assert out.lines[-1] == f"Loaded image ID: {configs[0]}"
    assert mr.ok("run", "--rm", configs[0][7:19]).stdout == "by-id\n"


def test_a_docker_25_archive_with_several_images_and_tags_loads_every_one(mr, tmp_path):
    archive, configs = docker25_archive(tmp_path, [("one", ["library/first:1", "library/first:latest"]),
                                                   ("two", ["me/second:2"])], index_lists=True)
    out = mr.ok("load", str(archive))
    assert sorted(line for line in out.lines if line.startswith("Loaded")) == [
        "Loaded image: first:1", "Loaded image: first:latest", "Loaded image: me/second:2"]
    assert mr.ok("run", "--rm", "first:1").stdout == "one\n"
    assert mr.ok("run", "--rm", "me/second:2").stdout == "two\n"
    ids = {mr.inspect(name)["Id"] for name in ("first:1", "first:latest")}
    assert ids == {configs[0]}


def test_a_docker_archive_of_two_images_loads_both(mr, tmp_path):
    root = tmp_path / "two"
    blobs = Blobs(root)
    entries = []
    for word in ("alpha", "beta"):
        _, cfg, layers = blobs.image([busybox_layer(), hello_layer(word)], ["cat", "/hello"])
        entries.append({"Config": f"blobs/sha256/{cfg['digest'][7:]}", "RepoTags": [f"localhost/{word}:v1"],
                        "Layers": [f"blobs/sha256/{d['digest'][7:]}" for d in layers]})
    (root / "manifest.json").write_text(json.dumps(entries))
    out = mr.ok("load", str(tar_dir(root, tmp_path / "two.tar")))
    assert [line for line in out.lines if line.startswith("Loaded")] == [
        "Loaded image: localhost/alpha:v1", "Loaded image: localhost/beta:v1"]
    assert "Already exists" in out.stdout          # the busybox layer, once for both
    assert mr.ok("run", "--rm", "localhost/beta:v1").stdout == "beta\n"


@pytest.mark.parametrize("where", ["nested index", "top-level index"])
def test_buildkit_attestation_manifests_are_not_taken_for_the_image(mr, tmp_path, where):
    """BuildKit lists an SBOM/provenance manifest (platform unknown/unknown, annotated
    vnd.docker.reference.type: attestation-manifest) beside each image."""
    root = tmp_path / "buildkit"
    blobs = Blobs(root)
    image, _, _ = blobs.image([busybox_layer(), hello_layer("built")], ["cat", "/hello"])
    statement = blobs.put(b'{"_type": "https://in-toto.io/Statement/v0.1"}', "application/vnd.in-toto+json")
    att_config = blobs.put(b"{}", "application/vnd.oci.image.config.v1+json")
    attestation = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": att_config, "layers": [statement]}
    att = blobs.put(json.dumps(attestation).encode(), OCI_MANIFEST,
                    platform={"os": "unknown", "architecture": "unknown"},
                    annotations={"vnd.docker.reference.type": "attestation-manifest",
                                 "vnd.docker.reference.digest": image["digest"]})
    image = dict(image, platform={"os": "linux", "architecture": "amd64"})
    name = {"org.opencontainers.image.ref.name": "latest", "io.containerd.image.name": "localhost/built:latest"}
    if where == "nested index":       # `docker buildx build --output type=oci`
        nested = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [att, image]}
        top = [blobs.put(json.dumps(nested).encode(), OCI_INDEX, annotations=name)]
    else:
        top = [att, dict(image, annotations=name)]
    (root / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    (root / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": top}))
    out = mr.ok("load", str(root))
    assert [line for line in out.lines if line.startswith("Loaded")] == ["Loaded image: localhost/built:latest"]
    assert mr.ok("run", "--rm", "localhost/built").stdout == "built\n"


def test_a_zero_byte_layer_blob_loads_as_an_empty_layer(mr, tmp_path):
    """Docker accepts a layer blob of 0 bytes (an empty tar stream)."""
    root = tmp_path / "empty-layer"
    blobs = Blobs(root)
    base = busybox_layer()
    layers = [blobs.put(base, "application/vnd.oci.image.layer.v1.tar"),
              blobs.put(b"", "application/vnd.oci.image.layer.v1.tar")]
    config = {"architecture": "amd64", "os": "linux", "config": {"Cmd": ["echo", "ran"]},
              "rootfs": {"type": "layers", "diff_ids": [d["digest"] for d in layers]}}
    cfg = blobs.put(json.dumps(config).encode(), "application/vnd.oci.image.config.v1+json")
    manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": cfg, "layers": layers}
    man = blobs.put(json.dumps(manifest).encode(), OCI_MANIFEST,
                    annotations={"io.containerd.image.name": "localhost/empty-layer:latest"})
    (root / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    (root / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [man]}))
    mr.ok("load", str(root))
    assert mr.ok("run", "--rm", "localhost/empty-layer").stdout == "ran\n"


# ---------------------------------------------------------------- Docker's ways in

def stdin_spools(mr) -> list[str]:
    tmp = mr.root / "tmp"
    return [name for name in os.listdir(tmp) if name.startswith("stdin-")] if tmp.is_dir() else []


@pytest.mark.parametrize("how", ["-i", "--input", "< FILE", "cat FILE |", "load -"])
def test_every_docker_spelling_of_load_reads_the_archive(mr, how):
    archive = mr.fixture_path("busybox", "docker-archive")
    if how in ("-i", "--input"):
        result = mr("load", how, archive)
    elif how == "< FILE":
        with open(archive, "rb") as f:
            result = mr("load", stdin=f)
    elif how == "load -":
        with open(archive, "rb") as f:
            result = mr("load", "-", stdin=f)
    else:
        cat = subprocess.Popen(["cat", archive], stdout=subprocess.PIPE)
        result = mr("load", stdin=cat.stdout)
        cat.stdout.close()
        assert cat.wait() == 0
    assert result.returncode == 0, result.stderr
    assert result.lines[-1] == "Loaded image: localhost/busybox:latest"
    assert stdin_spools(mr) == []
    assert mr.ok("run", "--rm", "busybox", "echo", "ok").stdout == "ok\n"


@pytest.mark.parametrize("data,expected", [(b"", "nothing came on stdin"),
                                           (b"not an archive\n" * 100, "stdin: not a readable tar archive")])
def test_bad_stdin_is_one_line_and_leaves_no_spool(mr, data, expected):
    result = mr("load", input=data.decode())
    assert result.returncode in (1, 2), result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0] and "Traceback" not in result.stderr, result.stderr
    assert stdin_spools(mr) == []


def test_a_load_from_a_terminal_stdin_says_how_to_give_the_archive(mr):
    import pty
    pid, master = pty.fork()
    if pid == 0:
        os.execve(sys.executable, [sys.executable, "-m", "minirun", "load"], mr.env)  # pragma: no cover
    output = b""
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:
            break
        if not chunk:
            break
        output += chunk
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 2
    assert b"stdin is a terminal" in output and b"minirun load < busybox.tar" in output, output


# ---------------------------------------------------------------- dir: and docker-dir

def test_minirun_loads_skopeos_dir_format(mr, tmp_path):
    peers.require("skopeo")
    source = f"oci-archive:{mr.fixture_path('myotherapp', 'oci-archive')}"
    config_digest = peers.skopeo_config_digest(source)
    target = tmp_path / "copy-dir"
    peers.skopeo_copy(source, f"dir:{target}", tmp_path)
    assert (target / "version").read_text().startswith("Directory Transport Version")
    out = mr.ok("load", str(target))
    assert out.lines[-1] == f"Loaded image ID: {config_digest}"
    assert mr.ok("run", "--rm", config_digest[7:19]).stdout.strip() == "[runtime 1.0] hello from myotherapp"
    out = mr.ok("load", "--tag", "localhost/from-dir:1", str(target))
    assert out.lines[-1] == "Loaded image: localhost/from-dir:1"


def test_a_dir_copy_of_a_manifest_list_is_refused_in_one_line(mr, tmp_path):
    root = tmp_path / "list-dir"
    root.mkdir()
    (root / "version").write_text("Directory Transport Version: 1.1\n")
    (root / "manifest.json").write_text(json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}))
    result = mr("load", str(root))
    assert result.returncode == 1
    assert "manifest list" in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_an_extended_header_declaring_megabytes_is_refused_before_it_is_read(mr, tmp_path):
    """tarfile reads a GNU long name whole at its declared size: 64 MiB of zeros, 64 KB
    compressed, took 91 MB of memory before load said no (an outside review)."""
    import gzip
    size = 64 << 20
    header = bytearray(512)
    header[0:13] = b"././@LongLink"
    header[100:108] = b"0000644\0"
    header[124:136] = b"%011o\0" % size
    header[156:157] = b"L"
    header[257:263] = b"ustar "
    header[263:265] = b" \0"
    header[148:156] = b" " * 8
    header[148:156] = b"%06o\0 " % sum(header)
    archive = tmp_path / "bomb.tar.gz"
    with gzip.open(archive, "wb") as f:
        f.write(bytes(header))
        for _ in range(size // (1 << 20)):
            f.write(bytes(1 << 20))
        f.write(bytes(1024))
    assert archive.stat().st_size < 1 << 20
    result = mr("load", "-i", str(archive))
    assert result.returncode == 1 and "extended tar header" in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_a_killed_load_from_stdin_leaves_a_spool_the_next_command_sweeps(mr):
    import signal
    import time
    archive = mr.fixture_path("busybox", "docker-archive")
    writer = subprocess.Popen(["sh", "-c", f"head -c 100000 {archive}; sleep 30"], stdout=subprocess.PIPE)
    load = mr.popen("load", stdin=writer.stdout, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    writer.stdout.close()
    deadline = time.monotonic() + 10
    while not stdin_spools(mr) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert stdin_spools(mr), "the spool never appeared"
    load.send_signal(signal.SIGTERM)                 # ends through finally: the spool goes
    load.wait(timeout=10)
    writer.kill()
    writer.wait()
    assert stdin_spools(mr) == []


def test_a_sigterm_the_moment_the_stdin_spool_exists_still_removes_it(tmp_path):
    """The spool of `load` from stdin is removed however SIGTERM finds it: the handler
    that turns SIGTERM into the Ctrl-C path is in place before the spool is made (it
    once came after, and a SIGTERM in between killed the load and left the spool).
    The open that makes the spool is held for 10 s here, with the spool on disk."""
    import signal
    import textwrap
    spool = tmp_path / "stdin-spool"
    script = textwrap.dedent('''
        import os, sys, time
        from minirun.sources import archive

        class Store:
            def staging_file(self, kind):
                return sys.argv[1]

        opened = os.open

        def held_open(path, *args, **kwargs):
            fd = opened(path, *args, **kwargs)
            if path == sys.argv[1]:
                print("made", flush=True)
                time.sleep(10)
            return fd

        os.open = held_open
        with archive.spooled(Store(), "-"):
            pass
    ''')
    reader, writer = os.pipe()                  # stdin that stays open and empty
    try:
        proc = subprocess.Popen([sys.executable, "-c", script, str(spool)], stdin=reader, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, cwd=REPO, text=True)
        try:
            assert proc.stdout.readline().strip() == "made" and spool.exists()
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=20)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    finally:
        os.close(reader)
        os.close(writer)
    assert proc.returncode != -signal.SIGTERM, "SIGTERM killed it before the handler was in place"
    assert not spool.exists()
