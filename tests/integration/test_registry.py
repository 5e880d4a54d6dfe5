"""minirun pull / push / login against Debian's docker-registry on 127.0.0.1,
with skopeo as the peer, a token service for the bearer flow, and a proxy
that injects faults. Nothing here leaves loopback."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from .measure import max_rss_mb
from .peers import sealed
from .registry import DOCKER_REGISTRY, FaultProxy, Registry

pytestmark = pytest.mark.skipif(DOCKER_REGISTRY is None or shutil.which("skopeo") is None,
                                reason="needs docker-registry and skopeo (apt-get install docker-registry skopeo)")


def skopeo_push(layout: str, dest: str, *creds: str) -> None:
    subprocess.run(sealed(["skopeo", "copy", "--quiet", "--dest-tls-verify=false", *creds,
                           f"oci:{layout}:latest", f"docker://{dest}"]), check=True, capture_output=True)


def one_line_error(result) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    return lines[0]


def nothing_stored(mr) -> bool:
    images = mr.root / "images.json"
    empty = not images.exists() or json.loads(images.read_text())["images"] == {}
    layers = mr.root / "layers" / "sha256"
    return empty and (not layers.exists() or os.listdir(layers) == [])


# ---------------------------------------------------------------- interop

def test_minirun_push_is_readable_by_skopeo_and_pullable_back(mr, registry, tmp_path):
    mr.load("myapp")
    out = mr.ok("push", "myapp", f"{registry.address}/team/myapp:v1")
    digest = out.lines[-1].split("digest: ")[1].split()[0]
    inspected = json.loads(subprocess.run(
        sealed(["skopeo", "inspect", "--tls-verify=false", f"docker://{registry.address}/team/myapp:v1"]),
        check=True, capture_output=True, text=True).stdout)
    assert inspected["Digest"] == digest
    subprocess.run(sealed(["skopeo", "copy", "--quiet", "--src-tls-verify=false",
                           f"docker://{registry.address}/team/myapp:v1", f"oci:{tmp_path / 'copy'}:v1"]),
                   check=True, capture_output=True)
    mr.ok("rmi", "myapp")
    pulled = mr.ok("pull", f"{registry.address}/team/myapp:v1")
    assert f"Digest: {digest}" in pulled.lines
    assert mr.ok("run", "--rm", f"{registry.address}/team/myapp:v1").stdout.strip().endswith("hello from myapp")


def test_push_and_commit_of_an_image_whose_layers_came_from_another_image(mr, registry, tmp_path):
    """myotherapp from a docker-archive with uncompressed layers (skopeo writes
    those) finds its two base layers cached from myapp's OCI layout ("Already
    exists"), so its own blobs for them were never stored. push and commit use
    the cached layers' own gzip blobs."""
    archive = tmp_path / "other.tar"
    subprocess.run(sealed(["skopeo", "copy", "--quiet", f"oci:{mr.fixture_path('myotherapp')}",
                           f"docker-archive:{archive}:localhost/myotherapp:latest"]),
                   check=True, capture_output=True)
    mr.load("myapp")
    loaded = mr.ok("load", str(archive)).stdout
    assert loaded.count("Already exists") == 2
    doc = json.loads((mr.root / "images.json").read_text())
    other = doc["images"][doc["tags"]["localhost/myotherapp:latest"]]
    missing = [l["blob"] for l in other["layers"] if not (mr.root / "blobs/sha256" / l["blob"][7:]).exists()]
    assert len(missing) == 2                       # the situation under test
    mr.ok("push", "myotherapp", f"{registry.address}/re/other:1")
    mr.ok("run", "--name", "c", "myotherapp", "sh", "-c", "echo c > /c")
    mr.ok("commit", "c", f"{registry.address}/re/other:2")
    mr.ok("push", f"{registry.address}/re/other:2")
    mr.ok("rm", "c")
    mr.ok("rmi", "-f", *doc["images"], f"{registry.address}/re/other:2")
    assert mr.layer_dirs() == []
    mr.ok("pull", f"{registry.address}/re/other:2")
    assert mr.ok("run", "--rm", f"{registry.address}/re/other:2", "cat", "/c").stdout == "c\n"
    mr.ok("pull", f"{registry.address}/re/other:1")
    assert json.loads(mr.ok("inspect", f"{registry.address}/re/other:1").stdout)[0]["Id"] == \
        doc["tags"]["localhost/myotherapp:latest"]


def test_image_pushed_by_skopeo_is_pulled_by_minirun(mr, registry):
    skopeo_push(mr.fixture_path("myotherapp"), f"{registry.address}/peer/myotherapp:latest")
    out = mr.ok("pull", f"{registry.address}/peer/myotherapp")
    assert sum("Pull complete" in line for line in out.lines) == 3
    assert out.lines[-1] == f"{registry.address}/peer/myotherapp:latest"
    assert mr.ok("run", "--rm", f"{registry.address}/peer/myotherapp").stdout.strip().endswith(
        "hello from myotherapp")


def test_second_pull_fetches_only_the_blobs_the_first_did_not_bring(mr, registry):
    skopeo_push(mr.fixture_path("myapp"), f"{registry.address}/dia/myapp:latest")
    skopeo_push(mr.fixture_path("myotherapp"), f"{registry.address}/dia/myotherapp:latest")
    before = len(registry.blob_gets())
    first = mr.ok("pull", f"{registry.address}/dia/myapp")
    after_first = registry.blob_gets()[before:]
    second = mr.ok("pull", f"{registry.address}/dia/myotherapp")
    after_second = registry.blob_gets()[before + len(after_first):]
    assert len(after_first) == 4                       # config + 3 layers
    assert len(after_second) == 2                      # config + the one layer myotherapp adds
    assert not set(after_second) & set(after_first)
    assert sum("Already exists" in line for line in second.lines) == 2
    assert "Already exists" not in first.stdout


def test_no_op_pull_costs_one_manifest_request(mr, registry):
    skopeo_push(mr.fixture_path("busybox"), f"{registry.address}/library/busybox:latest")
    mr.ok("pull", f"{registry.address}/library/busybox")
    before = len(registry.requests())
    again = mr.ok("pull", f"{registry.address}/library/busybox")
    new = registry.requests()[before:]
    assert [r.split()[0] for r in new] == ["GET"] and "/manifests/latest" in new[0]
    assert f"Status: Image is up to date for {registry.address}/library/busybox:latest" in again.lines


def test_platform_is_picked_from_an_index(mr, registry, tmp_path):
    import platform
    from .imagebuild import busybox_layer, write_layout
    host = "amd64" if platform.machine() == "x86_64" else "arm64"
    other = "arm64" if host == "amd64" else "amd64"
    descs = []
    for arch in (host, other):
        layout = tmp_path / arch
        write_layout(layout, [busybox_layer()], {"Cmd": ["sh"], "Env": [f"ARCH={arch}"]}, arch=arch)
        skopeo_push(str(layout), f"{registry.address}/multi/img:{arch}")
        man = urllib.request.urlopen(urllib.request.Request(
            f"http://{registry.address}/v2/multi/img/manifests/{arch}",
            headers={"Accept": "application/vnd.oci.image.manifest.v1+json"}))
        body = man.read()
        descs.append({"mediaType": "application/vnd.oci.image.manifest.v1+json",
                      "digest": man.headers["Docker-Content-Digest"], "size": len(body),
                      "platform": {"os": "linux", "architecture": arch}})
    index = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                        "manifests": descs}).encode()
    urllib.request.urlopen(urllib.request.Request(
        f"http://{registry.address}/v2/multi/img/manifests/latest", data=index, method="PUT",
        headers={"Content-Type": "application/vnd.oci.image.index.v1+json"}))
    mr.ok("pull", f"{registry.address}/multi/img")
    env = mr.ok("run", "--rm", f"{registry.address}/multi/img", "sh", "-c", "echo $ARCH").stdout.strip()
    assert env == host
    mr.ok("pull", "--platform", f"linux/{other}", f"{registry.address}/multi/img:latest")
    listed = [json.loads(line) for line in mr.ok("images", "--format", "json").lines]
    assert {row["Architecture"] for row in listed} == {host, other}
    missing = mr("pull", "--platform", "linux/s390x", f"{registry.address}/multi/img")
    assert missing.returncode == 2
    line = one_line_error(missing)
    assert f"linux/{host}" in line and f"linux/{other}" in line


# ---------------------------------------------------------------- auth

def test_basic_auth_with_login_and_logout(mr, tmp_path):
    reg = Registry(tmp_path / "basic", auth="htpasswd", users={"alice": "s3cret"})
    try:
        skopeo_push(mr.fixture_path("busybox"), f"{reg.address}/private/bb:latest", "--dest-creds=alice:s3cret")
        anonymous = mr("pull", f"{reg.address}/private/bb")
        assert anonymous.returncode == 1 and "login" in one_line_error(anonymous)
        bad = mr("login", "-u", "alice", "--password-stdin", reg.address, input="wrong\n")
        assert bad.returncode == 1 and "rejected" in one_line_error(bad)
        mr.ok("login", "-u", "alice", "--password-stdin", reg.address, input="s3cret\n")
        config = json.loads((Path(mr.env["DOCKER_CONFIG"]) / "config.json").read_text())
        assert reg.address in config["auths"]
        mr.ok("pull", f"{reg.address}/private/bb")
        mr.ok("push", f"{reg.address}/private/bb", f"{reg.address}/private/bb:copy")
        mr.ok("logout", reg.address)
        assert reg.address not in json.loads((Path(mr.env["DOCKER_CONFIG"]) / "config.json").read_text())["auths"]
        assert mr("pull", f"{reg.address}/private/bb:copy").returncode == 1
        assert nothing_stored(mr) is False          # the earlier pull stays
    finally:
        reg.stop()


def test_bearer_token_flow(mr, tmp_path):
    reg = Registry(tmp_path / "token", auth="token", users={"bob": "hunter2"})
    try:
        mr.load("busybox")
        mr.ok("login", "-u", "bob", "--password-stdin", reg.address, input="hunter2\n")
        mr.ok("push", "busybox", f"{reg.address}/tok/bb:1")
        assert any(a["name"] == "tok/bb" and "push" in a["actions"]
                   for issued in reg.token_server.issued if issued["user"] == "bob" for a in issued["access"])
        mr.ok("logout", reg.address)
        mr.ok("rmi", "busybox")
        mr.ok("pull", f"{reg.address}/tok/bb:1")          # anonymous token, pull scope
        anon = [i for i in reg.token_server.issued if i["user"] == ""]
        assert any(a["name"] == "tok/bb" and a["actions"] == ["pull"] for i in anon for a in i["access"])
        bad = mr("login", "-u", "bob", "--password-stdin", reg.address, input="nope\n")
        assert bad.returncode == 1 and "refused" in one_line_error(bad)
    finally:
        reg.stop()


def test_redirects_never_carry_the_authorization_header():
    import http.server
    import threading
    from minirun.sources.registry.http import Http
    seen = {}

    def server(name, answer):
        class H(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                seen[name] = self.headers.get("Authorization")
                answer(self)

            def log_message(self, *a):
                pass
        httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        return httpd

    def storage_answer(h):
        h.send_response(200)
        h.send_header("Content-Length", "4")
        h.end_headers()
        h.wfile.write(b"blob")
    storage = server("storage", storage_answer)

    def registry_answer(h):
        h.send_response(307)
        h.send_header("Location", f"http://127.0.0.1:{storage.server_address[1]}/bucket/blob?sig=1")
        h.send_header("Content-Length", "0")
        h.end_headers()
    reg = server("registry", registry_answer)
    try:
        netloc = f"127.0.0.1:{reg.server_address[1]}"
        response = Http().request("GET", f"http://{netloc}/v2/x/blobs/sha256:00",
                                  {"Authorization": "Bearer secret"}, auth_for=netloc)
        assert response.read(100) == b"blob"
        assert seen == {"registry": "Bearer secret", "storage": None}
    finally:
        reg.shutdown()
        storage.shutdown()


# ---------------------------------------------------------------- faults

@pytest.fixture
def proxy(registry):
    p = FaultProxy(registry.address)
    yield p
    p.stop()


def test_dropped_connection_resumes_with_a_range_request(mr, registry, proxy):
    skopeo_push(mr.fixture_path("busybox"), f"{registry.address}/r/bb:latest")
    proxy.cut_blob_after = 100_000
    mr.ok("pull", f"{proxy.address}/r/bb")
    assert "bytes=100000-" in proxy.ranges()
    assert mr.ok("run", "--rm", f"{proxy.address}/r/bb", "echo", "ok").stdout == "ok\n"


def test_killed_pull_leaves_no_blob_and_the_next_pull_finishes_it(mr, registry, proxy):
    skopeo_push(mr.fixture_path("busybox"), f"{registry.address}/k/bb:latest")
    proxy.delay_per_chunk = 0.05
    pull = mr.popen("pull", f"{proxy.address}/k/bb", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    tmp = mr.root / "tmp"
    deadline = time.monotonic() + 20
    partial = None
    while time.monotonic() < deadline and partial is None:
        found = [p for p in tmp.glob("download-*") if p.stat().st_size > 50_000] if tmp.exists() else []
        partial = found[0] if found else None
        time.sleep(0.02)
    assert partial is not None, "the download never started"
    pull.send_signal(signal.SIGKILL)
    pull.wait()
    digest = "sha256:" + partial.name.removeprefix("download-")
    assert not (mr.root / "blobs/sha256" / digest[7:]).exists()
    assert nothing_stored(mr)
    proxy.delay_per_chunk = 0
    mr.ok("pull", f"{proxy.address}/k/bb")
    assert any(r.startswith("bytes=") and int(r[6:-1]) >= 50_000 for r in proxy.ranges())
    assert not partial.exists()


def test_registry_dying_mid_download_is_one_clear_error_and_stores_nothing(mr, registry, proxy):
    skopeo_push(mr.fixture_path("busybox"), f"{registry.address}/d/bb:latest")
    proxy.cut_blob_after = 20_000
    proxy.cut_always = True
    result = mr("pull", f"{proxy.address}/d/bb")
    assert result.returncode == 1
    assert "retries" in one_line_error(result)
    assert nothing_stored(mr)


@pytest.mark.parametrize("what", ["blob", "manifest"])
def test_content_that_does_not_match_its_digest_is_refused(mr, registry, proxy, what):
    skopeo_push(mr.fixture_path("busybox"), f"{registry.address}/c/bb:latest")
    if what == "blob":
        proxy.corrupt_blobs = True
    else:
        proxy.corrupt_manifests = True
    result = mr("pull", f"{proxy.address}/c/bb")
    assert result.returncode == 1
    assert "digest" in one_line_error(result)
    assert nothing_stored(mr)
    assert not list((mr.root / "blobs" / "sha256").glob("*")) if (mr.root / "blobs").exists() else True


def test_unknown_repository_or_tag(mr, registry):
    skopeo_push(mr.fixture_path("busybox"), f"{registry.address}/u/bb:latest")
    for ref in (f"{registry.address}/u/nope", f"{registry.address}/u/bb:nope"):
        result = mr("pull", ref)
        assert result.returncode == 1 and "not found" in one_line_error(result)
    assert nothing_stored(mr)


def test_plain_http_registry_must_be_marked_insecure(mr, registry):
    proxy = FaultProxy(registry.address, host="127.0.0.2")
    try:
        skopeo_push(mr.fixture_path("busybox"), f"{registry.address}/i/bb:latest")
        refused = mr("pull", f"{proxy.address}/i/bb")
        assert refused.returncode == 1
        line = one_line_error(refused)
        assert "TLS" in line and f"MINIRUN_INSECURE_REGISTRIES={proxy.address}" in line
        mr.ok("pull", f"{proxy.address}/i/bb", env={"MINIRUN_INSECURE_REGISTRIES": proxy.address})
    finally:
        proxy.stop()


def test_two_pulls_of_images_sharing_layers_download_each_layer_once(mr, registry, proxy):
    skopeo_push(mr.fixture_path("myapp"), f"{registry.address}/cc/myapp:latest")
    skopeo_push(mr.fixture_path("myotherapp"), f"{registry.address}/cc/myotherapp:latest")
    proxy.delay_per_chunk = 0.01
    before = len(registry.blob_gets())
    pulls = [mr.popen("pull", f"{proxy.address}/cc/{name}", stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                      text=True) for name in ("myapp", "myotherapp")]
    outputs = [p.communicate(timeout=60) for p in pulls]
    assert [p.returncode for p in pulls] == [0, 0], outputs
    gets = registry.blob_gets()[before:]
    layer_gets = [g for g in gets]
    assert len(layer_gets) == len(set(layer_gets)), f"a blob was downloaded twice: {gets}"
    assert len(os.listdir(mr.root / "layers" / "sha256")) == 4


def test_schema1_manifest_is_refused_clearly(mr, registry, proxy):
    skopeo_push(mr.fixture_path("busybox"), f"{registry.address}/s1/bb:latest")
    schema1 = json.dumps({"schemaVersion": 1, "name": "s1/bb", "tag": "latest", "fsLayers": []}).encode()
    proxy.manifest_override = (schema1, "application/vnd.docker.distribution.manifest.v1+prettyjws")
    result = mr("pull", f"{proxy.address}/s1/bb")
    assert result.returncode == 1 and "schema 1" in one_line_error(result)
    assert nothing_stored(mr)


def test_zstd_and_uncompressed_layers_round_trip(mr, registry, tmp_path):
    import gzip
    import hashlib
    import zstandard
    from .imagebuild import busybox_layer, entry, layer_tar, write_layout
    write_layout(tmp_path / "mixed", [busybox_layer(), layer_tar([entry("z.txt", data=b"zstd\n")]),
                                      layer_tar([entry("u.txt", data=b"plain\n")])], {"Cmd": ["sh"]})
    index = json.loads((tmp_path / "mixed/index.json").read_text())
    blobs = tmp_path / "mixed/blobs/sha256"
    manifest = json.loads((blobs / index["manifests"][0]["digest"][7:]).read_text())
    for layer, kind in zip(manifest["layers"][1:], ("zstd", "none")):
        raw = gzip.decompress((blobs / layer["digest"][7:]).read_bytes())
        data = zstandard.ZstdCompressor().compress(raw) if kind == "zstd" else raw
        digest = hashlib.sha256(data).hexdigest()
        (blobs / digest).write_bytes(data)
        layer.update(digest="sha256:" + digest, size=len(data),
                     mediaType="application/vnd.oci.image.layer.v1.tar" + ("+zstd" if kind == "zstd" else ""))
    data = json.dumps(manifest).encode()
    digest = hashlib.sha256(data).hexdigest()
    (blobs / digest).write_bytes(data)
    index["manifests"][0].update(digest="sha256:" + digest, size=len(data))
    (tmp_path / "mixed/index.json").write_text(json.dumps(index))
    mr.ok("load", str(tmp_path / "mixed"))
    mr.ok("push", "mixed", f"{registry.address}/mix/img:1")
    mr.ok("rmi", "mixed")
    mr.ok("pull", f"{registry.address}/mix/img:1")
    out = mr.ok("run", "--rm", f"{registry.address}/mix/img:1", "cat", "/z.txt", "/u.txt").stdout
    assert out == "zstd\nplain\n"


def test_https_registry_is_verified_against_the_system_cas(mr, tmp_path):
    reg = Registry(tmp_path / "tls", tls_host="127.0.0.2")
    try:
        mr.load("busybox")
        untrusted = mr("push", "busybox", f"{reg.address}/t/bb:1")
        assert untrusted.returncode == 1 and "TLS" in one_line_error(untrusted)
        trusted = {"SSL_CERT_FILE": str(reg.ca)}
        mr.ok("push", "busybox", f"{reg.address}/t/bb:1", env=trusted)
        again = mr.ok("push", "busybox", f"{reg.address}/t/bb:1", env=trusted)
        assert again.stdout.count("Layer already exists") == 2       # the layer and the config
        mr.ok("rmi", "busybox")
        mr.ok("pull", f"{reg.address}/t/bb:1", env=trusted)
    finally:
        reg.stop()


def test_stored_credentials_that_are_wrong_fail_the_pull_clearly(mr, tmp_path):
    import base64
    reg = Registry(tmp_path / "basic2", auth="htpasswd", users={"carol": "right"})
    try:
        skopeo_push(mr.fixture_path("busybox"), f"{reg.address}/p/bb:latest", "--dest-creds=carol:right")
        config = Path(mr.env["DOCKER_CONFIG"]) / "config.json"
        config.parent.mkdir(parents=True, exist_ok=True)
        config.write_text(json.dumps({"auths": {reg.address: {"auth": base64.b64encode(b"carol:wrong").decode()}}}))
        result = mr("pull", f"{reg.address}/p/bb")
        assert result.returncode == 1 and "credentials rejected" in one_line_error(result)
        assert nothing_stored(mr)
    finally:
        reg.stop()


def test_eight_parallel_pulls_of_overlapping_images_fetch_each_blob_once(mr, registry):
    """myapp and myotherapp share two layers; eight pulls of them (and of busybox)
    race. Each layer blob is fetched from the registry once, extracted once and
    stored once; every image runs; fsck is clean."""
    from .test_concurrency import assert_store_whole, finish, start
    for name in ("myapp", "myotherapp", "busybox"):
        skopeo_push(mr.fixture_path(name), f"{registry.address}/par/{name}:latest")
    refs = [f"{registry.address}/par/{name}" for name in
            ("myapp", "myotherapp", "busybox", "myotherapp", "myapp", "busybox", "myapp", "myotherapp")]
    before = len(registry.blob_gets())
    began = time.monotonic()
    results = finish([start(mr, "pull", ref) for ref in refs])
    took = time.monotonic() - began
    assert all(code == 0 for code, _, _ in results), [err for code, _, err in results if code]
    fetched = registry.blob_gets()[before:]
    layer_digests = set()
    for name in ("myapp", "myotherapp", "busybox"):
        index = json.loads(Path(mr.fixture_path(name), "index.json").read_text())
        blob = Path(mr.fixture_path(name), "blobs", *index["manifests"][0]["digest"].split(":"))
        layer_digests |= {layer["digest"] for layer in json.loads(blob.read_text())["layers"]}
    layer_gets = [d for d in fetched if d in layer_digests]
    assert sorted(layer_gets) == sorted(layer_digests), "a layer blob was fetched twice, or not at all"
    keys = [json.loads((mr.root / "layers/sha256" / d / "meta.json").read_text())["diff_id"]
            for d in mr.layer_dirs()]
    assert len(keys) == len(set(keys)) == len(layer_digests)          # no layer stored twice
    assert_store_whole(mr)
    print(f"8 parallel pulls: {took:.2f} s")


def test_run_pulls_a_missing_image_and_pull_never_and_always_do_as_they_say(mr, registry):
    """docker run's --pull: missing (the default) pulls what the store lacks, progress
    on stderr and only the container's output on stdout; never refuses; always
    asks the registry first, fetching no layer already here."""
    mr.load("myapp")
    ref = f"{registry.address}/team/myapp:v2"
    mr.ok("push", "myapp", ref)
    mr.ok("rmi", "myapp")
    mr.ok("prune", "-f")
    assert mr.ok("images", "-q").stdout == ""
    never = mr("run", "--rm", "--pull", "never", ref)
    assert never.returncode == 125 and "no such image" in never.stderr
    first = mr.ok("run", "--rm", ref)
    assert first.stdout.strip().endswith("hello from myapp")
    assert f"Unable to find image '{ref}' locally" in first.stderr
    assert "Pull complete" in first.stderr and "Downloaded newer image" in first.stderr
    again = mr.ok("run", "--rm", ref)
    assert again.stderr == ""                                  # here now: no registry call
    always = mr.ok("run", "--rm", "--pull", "always", ref)
    assert "Image is up to date" in always.stderr and "Pull complete" not in always.stderr
    assert always.stdout == first.stdout
    bad = mr("run", "--rm", "--pull", "sometimes", ref)
    assert bad.returncode == 125 and "--pull missing, always or never" in bad.stderr


def test_run_of_an_image_no_registry_has_fails_in_two_lines(mr, registry):
    result = mr("run", "--rm", f"{registry.address}/team/absent:v1")
    assert result.returncode == 125
    lines = result.stderr.strip().splitlines()
    assert lines[0] == f"Unable to find image '{registry.address}/team/absent:v1' locally", lines
    assert lines[-1].startswith(f"Error: pulling {registry.address}/team/absent:v1: "), lines
    assert "Traceback" not in result.stderr
    assert mr.ok("ps", "-a", "-q").stdout == ""


# ---------------------------------------------------------------- a registry as an attacker

class _Hostile:
    """A registry on 127.0.0.1 that answers /v2/ and then misbehaves on every other
    request as `answer(handler)` says; stopped at the end of the test."""

    def __init__(self, answer, host: str = "127.0.0.1"):
        import http.server
        import threading

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                if self.path == "/v2/":
                    self.send_response(200)
                    self.send_header("Content-Length", "2")
                    self.end_headers()
                    self.wfile.write(b"{}")
                    return
                try:
                    answer(self)
                except OSError:             # minirun hung up: the end every answer here hopes for
                    self.close_connection = True

            do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

            def log_message(self, *a):
                pass
        self.httpd = http.server.ThreadingHTTPServer((host, 0), Handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.address = f"{host}:{self.httpd.server_address[1]}"

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def _failed_pull_from(mr, answer, env: dict | None = None, others: tuple = (), credentials: bool = False) -> str:
    """Pull from a _Hostile(answer) (40 s at most: the tests' hang detector), with
    credentials stored for it if asked; stop it and the `others` servers; check the
    pull failed with exit 1 and stored nothing, and give its one error line."""
    hostile = _Hostile(answer)
    try:
        if credentials:
            _credentials_for(mr, hostile.address)
        result = mr("pull", f"{hostile.address}/evil/img:latest", timeout=40, env=env)
    finally:
        for server in (hostile, *others):
            server.stop()
    assert result.returncode == 1, (result.returncode, result.stderr)
    assert nothing_stored(mr)
    return one_line_error(result)


@pytest.mark.parametrize("location", ["http://[::1/x", "http://127.0.0.1:ab/x", "http://127.0.0.1:99999/x",
                                      "file:///etc/passwd", "ftp://127.0.0.1/x", "//127.0.0.1:ab/x"])
def test_a_redirect_to_a_url_that_cannot_be_fetched_is_one_line(mr, location):
    """A registry answers every request past /v2/ with a redirect to a malformed or
    foreign URL: urljoin's ValueError and http.client's InvalidURL ended `pull` in
    a traceback (an outside review did it). Now: one line naming the URL, exit 1,
    nothing stored."""
    def redirect(handler):
        handler.send_response(302)
        handler.send_header("Location", location)
        handler.send_header("Content-Length", "0")
        handler.end_headers()
    line = _failed_pull_from(mr, redirect)
    assert "cannot fetch" in line or "cannot reach" in line, line


def _drip(handler, data: bytes, every: float = 0.25) -> None:
    for byte in data:
        handler.wfile.write(bytes([byte]))
        handler.wfile.flush()
        time.sleep(every)


def _drip_status(handler):
    _drip(handler, b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n" * 1000)


def _drip_manifest(handler):
    handler.send_response(200)
    handler.send_header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
    handler.send_header("Content-Length", "4000")
    handler.end_headers()
    _drip(handler, b" " * 4000)


@pytest.mark.parametrize("answer", [_drip_status, _drip_manifest], ids=["status-line", "manifest-body"])
def test_a_registry_that_drips_its_answer_is_given_up(mr, answer):
    """An outside review held `pull` for as long as it liked with a registry that
    sends a byte every few seconds: the socket timeout (30 s) counts from the last
    byte, so a pull, and the gc lock it holds shared, never ended. Now each window
    of MINIRUN_REGISTRY_TIMEOUT seconds must bring 1 KiB a second: one line, exit 1,
    nothing stored (the old code hung until the test's timeout)."""
    line = _failed_pull_from(mr, answer, env={"MINIRUN_REGISTRY_TIMEOUT": "2"})
    assert "stalled" in line and "MINIRUN_REGISTRY_TIMEOUT" in line, line


def test_a_layer_that_drips_is_given_up_after_its_retries(mr, registry, proxy):
    skopeo_push(mr.fixture_path("busybox"), f"{registry.address}/drip/bb:latest")
    proxy.drip_blobs = 0.25
    result = mr("pull", f"{proxy.address}/drip/bb", timeout=60, env={"MINIRUN_REGISTRY_TIMEOUT": "2"})
    assert result.returncode == 1, (result.returncode, result.stderr)
    line = one_line_error(result)
    assert "stalled" in line and "retries" in line, line
    assert nothing_stored(mr)             # (the partial download stays in tmp/, for the next pull to resume)


def _endless(status: int, **headers):
    def answer(handler):
        handler.send_response(status)
        for key, value in headers.items():
            handler.send_header(key.replace("_", "-"), value)
        handler.send_header("Transfer-Encoding", "chunked")
        handler.end_headers()
        chunk = b"%x\r\n%s\r\n" % (65536, b"x" * 65536)
        while True:                         # 64 KiB chunks until minirun hangs up
            handler.wfile.write(chunk)
    return answer


@pytest.mark.parametrize("status,headers", [
    (302, {"Location": "/v2/evil/img/manifests/elsewhere"}),
    (401, {"WWW_Authenticate": 'Basic realm="x"'}),
], ids=["redirect", "unauthorized"])
def test_an_endless_body_on_a_redirect_or_a_401_is_not_read_to_its_end(mr, status, headers):
    """minirun drained the body of a redirect or a 401 with an unbounded read(): a
    registry streaming one forever grew the process without limit (the old code
    ran until the test's timeout). Now at most 1 MiB is read and the connection
    dropped; the pull ends in one line."""
    _failed_pull_from(mr, _endless(status, **headers))


def _answer(status: int, body: bytes = b"", **headers):
    def answer(handler):
        handler.send_response(status)
        for key, value in headers.items():
            handler.send_header(key.replace("_", "-"), value)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)
    return answer


def _endless_continue(handler):
    while True:                             # http.client skips 100 answers without limit
        handler.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n" * 100)


def _endless_trailer(handler):
    handler.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                        b"Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n")
    while True:
        handler.wfile.write(b"X-Trailer: y\r\n" * 1000)


@pytest.mark.parametrize("answer", [_endless_continue, _endless_trailer], ids=["100-continue", "trailer"])
def test_an_endless_head_or_trailer_sent_fast_is_cut_off(mr, answer):
    """A registry that sends fast passes any speed limit: an endless run of `100
    Continue` answers, or of trailer lines after a chunked body, held pull forever
    (http.client skips both without limit; an outside review). Now the head and
    the trailer get 256 KiB each."""
    line = _failed_pull_from(mr, answer)
    assert "malformed answer" in line and "KiB" in line, line


def _token_json(token) -> bytes:
    return json.dumps({"token": token}).encode()


@pytest.mark.parametrize("what,said", [
    ("realm-not-a-url", "cannot fetch"), ("token-with-crlf", "token"), ("token-not-ascii", "token"),
    ("token-nested", "token"), ("error-nested", "not found"), ("challenge-huge", "WWW-Authenticate"),
])
def test_a_hostile_auth_handshake_or_error_body_is_one_line(mr, what, said):
    """Each of these ended pull in a traceback (ValueError from urlsplit or from
    http.client's putheader, RecursionError from json), in a line blaming DNS (a
    non-ASCII token), or, for a 180 KB challenge, in a minute and more of
    regular-expression backtracking (an outside review)."""
    def answer(handler):
        if handler.path.startswith("/token"):
            token = {"token-with-crlf": "abc\r\nX-Evil: 1", "token-not-ascii": "ab\u20ac"}.get(what)
            body = b"[" * 200_000 if what == "token-nested" else _token_json(token)
            return _answer(200, body, Content_Type="application/json")(handler)
        if what == "error-nested":
            return _answer(404, b"[" * 200_000, Content_Type="application/json")(handler)
        realm = "http://[::1/token" if what == "realm-not-a-url" else f"http://{hostile.address}/token"
        challenge = f'Bearer realm="{realm}",service="x"'
        if what == "challenge-huge":            # two folded lines, each under http.client's line limit
            challenge = "Bearer " + "\r\n ".join(["a" * 60_000] * 3)
        _answer(401, WWW_Authenticate=challenge)(handler)
    hostile = _Hostile(answer)
    try:
        result = mr("pull", f"{hostile.address}/evil/img:latest", timeout=40)
    finally:
        hostile.stop()
    assert result.returncode == 1, (result.returncode, result.stderr)
    assert said in one_line_error(result)
    assert nothing_stored(mr)


def _credentials_for(mr, registry: str) -> None:
    config = Path(mr.env["DOCKER_CONFIG"])
    config.mkdir(parents=True, exist_ok=True)
    (config / "config.json").write_text(json.dumps({"auths": {registry: {"auth": "Ym9iOmh1bnRlcjI="}}}))


def test_credentials_never_go_to_a_plain_http_token_realm_elsewhere(mr):
    """A registry's Bearer challenge named a token realm on plain HTTP at another
    host: minirun sent the user's Basic credentials there in clear (an outside
    review, from an HTTPS registry). Plain HTTP is now allowed only for loopback
    names and listed registries, for every URL minirun fetches."""
    seen = []

    def token_service(handler):
        seen.append(handler.headers.get("Authorization"))
        _answer(200, _token_json("t"), Content_Type="application/json")(handler)
    elsewhere = _Hostile(token_service, host="127.0.0.3")
    line = _failed_pull_from(mr, _answer(401, WWW_Authenticate=f'Bearer realm="http://{elsewhere.address}/token"'),
                             others=(elsewhere,), credentials=True)
    assert "plain HTTP" in line and f"MINIRUN_INSECURE_REGISTRIES={elsewhere.address}" in line, line
    assert seen == []


def test_push_never_uploads_to_a_plain_http_location_elsewhere(mr):
    """An upload's Location header named plain HTTP on another host: push sent the
    blob, and the bearer token with it when the host was the registry's own (an
    outside review). Refused before anything is sent there."""
    mr.load("busybox")
    seen = []

    def upload_target(handler):
        seen.append((handler.command, handler.path))
        _answer(201)(handler)
    elsewhere = _Hostile(upload_target, host="127.0.0.3")

    def registry(handler):
        if handler.command == "POST":
            return _answer(202, Location=f"http://{elsewhere.address}/upload/1")(handler)
        _answer(404)(handler)                  # no blob is there yet
    hostile = _Hostile(registry)
    try:
        result = mr("push", "busybox", f"{hostile.address}/evil/bb:latest", timeout=40)
    finally:
        hostile.stop()
        elsewhere.stop()
    assert result.returncode == 1, (result.returncode, result.stderr)
    assert "plain HTTP" in one_line_error(result)
    assert seen == []


def test_chunk_framing_is_no_progress(mr):
    """Each byte of a manifest in a chunk of its own, behind a 60 KB chunk extension:
    the wire ran at 120 KB/s while the manifest came at 2 bytes a second, and the
    low-speed limit counted the wire (a second attacker's pass; the old code was
    still reading at the test's timeout). Only the body's bytes count now."""
    def padded(handler):
        handler.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/vnd.oci.image.manifest.v1+json\r\n"
                            b"Transfer-Encoding: chunked\r\n\r\n")
        for _ in range(400):
            handler.wfile.write(b"1;" + b"a" * 60_000 + b"\r\n{\r\n")
            handler.wfile.flush()
            time.sleep(0.5)
    line = _failed_pull_from(mr, padded, env={"MINIRUN_REGISTRY_TIMEOUT": "2"})
    assert "stalled" in line, line


def test_a_body_of_one_byte_chunks_is_read_in_bounded_memory(mr):
    """A 4 MiB manifest sent as 4 million 1-byte chunks: http.client holds every chunk
    as an object until the read ends, and the pull peaked at 390 MB (16 MiB of
    config took 1.5 GB). Read 8 KiB at a time, it stays near a normal pull's."""
    body = b"1\r\n \r\n" * (4 << 20) + b"0\r\n\r\n"

    def chunked(handler):
        handler.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/vnd.oci.image.manifest.v1+json\r\n"
                            b"Transfer-Encoding: chunked\r\n\r\n" + body)
    hostile = _Hostile(chunked)
    try:
        code, peak, err = max_rss_mb(mr.env, "pull", f"{hostile.address}/evil/img:latest")
    finally:
        hostile.stop()
    assert code == 1 and "Traceback" not in err, err
    assert peak < 150, peak


def test_a_redirect_target_asking_for_credentials_never_gets_the_registrys(mr):
    """The registry redirects to another host:port, which answers 401 with a Bearer
    realm of its own: minirun answered with the registry's Basic credentials, sent to
    that realm (a second attacker's pass). A 401 is answered only for the registry."""
    seen = []

    def other(handler):
        if handler.path.startswith("/token"):
            seen.append(handler.headers.get("Authorization"))
            return _answer(200, _token_json("cdn-token"), Content_Type="application/json")(handler)
        _answer(401, WWW_Authenticate=f'Bearer realm="http://{cdn.address}/token",service="cdn"')(handler)
    cdn = _Hostile(other)
    line = _failed_pull_from(mr, _answer(307, Location=f"http://{cdn.address}/v2/evil/img/manifests/latest"),
                             others=(cdn,), credentials=True)
    assert "credentials to" in line
    assert seen == []


def test_a_partial_download_from_another_registry_is_downloaded_again(mr, registry):
    """A registry that served wrong bytes and then cut the connection leaves a partial
    download (kept by digest, for a resume); the next pull, from an honest registry,
    resumed it and failed on the digest, blaming that registry (a second attacker's
    pass). Now a resumed blob that does not verify is fetched once more from its
    first byte."""
    layout = Path(mr.fixture_path("busybox"))
    skopeo_push(str(layout), f"{registry.address}/p/bb:latest")
    index = json.loads((layout / "index.json").read_text())
    manifest = json.loads((layout / "blobs/sha256" / index["manifests"][0]["digest"][7:]).read_text())
    layer = manifest["layers"][0]
    (mr.root / "tmp").mkdir(parents=True)           # what the other registry's bytes left
    (mr.root / "tmp" / f"download-{layer['digest'][7:]}").write_bytes(b"\0" * (layer["size"] // 2))
    mr.ok("pull", f"{registry.address}/p/bb")
    assert mr.ok("run", "--rm", f"{registry.address}/p/bb", "echo", "ok").stdout == "ok\n"
    assert not list((mr.root / "tmp").glob("download-*"))
