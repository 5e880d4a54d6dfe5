"""A real registry for tests (Debian's docker-registry, the reference distribution
server) on 127.0.0.1 at a free port, with its own storage, optionally behind
htpasswd basic auth or a bearer token service; plus a fault-injecting proxy.

Everything listens on loopback only and is stopped by the fixtures."""

from __future__ import annotations

import base64
import http.client
import http.server
import json
import re
import shutil
import socket
import subprocess
import threading
import time
import uuid
from pathlib import Path

DOCKER_REGISTRY = shutil.which("docker-registry")


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def wait_listening(host: str, port: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection((host, port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {host}:{port}")


class Registry:
    def __init__(self, workdir: Path, auth: str | None = None, users: dict[str, str] | None = None,
                 tls_host: str | None = None):
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.log = workdir / "registry.log"
        self.token_server: TokenServer | None = None
        config = {
            "version": 0.1,
            "log": {"level": "info", "accesslog": {"disabled": False}},
            "storage": {"filesystem": {"rootdirectory": str(workdir / "data")}, "delete": {"enabled": True}},
            "http": {"addr": self.address},
        }
        self.ca = None
        if tls_host:
            # a self-signed certificate for tls_host; clients trust it through SSL_CERT_FILE
            self.ca = workdir / "tls.crt"
            subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
                            str(workdir / "tls.key"), "-out", str(self.ca), "-days", "2",
                            "-subj", f"/CN={tls_host}", "-addext", f"subjectAltName=IP:{tls_host}"],
                           check=True, capture_output=True)
            self.address = f"{tls_host}:{self.port}"
            config["http"] = {"addr": self.address,
                              "tls": {"certificate": str(self.ca), "key": str(workdir / "tls.key")}}
        if auth == "htpasswd":
            htpasswd = workdir / "htpasswd"
            for i, (user, password) in enumerate((users or {}).items()):
                subprocess.run(["htpasswd", "-bB" + ("c" if i == 0 else ""), str(htpasswd), user, password],
                               check=True, capture_output=True)
            config["auth"] = {"htpasswd": {"realm": "minirun-test", "path": str(htpasswd)}}
        elif auth == "token":
            self.token_server = TokenServer(workdir, users or {})
            config["auth"] = {"token": {"realm": self.token_server.realm, "service": TokenServer.SERVICE,
                                        "issuer": TokenServer.ISSUER,
                                        "rootcertbundle": str(self.token_server.cert)}}
        (workdir / "config.yml").write_text(json.dumps(config))   # YAML is a superset of JSON
        self.proc = subprocess.Popen([DOCKER_REGISTRY, "serve", str(workdir / "config.yml")],
                                     stdout=open(self.log, "ab"), stderr=subprocess.STDOUT)
        wait_listening(self.address.rsplit(":", 1)[0], self.port)

    def blob_gets(self, repo: str | None = None) -> list[str]:
        """Digests of blob GETs answered 200/206, in order, from the access log."""
        pattern = re.compile(r'"GET /v2/(\S+)/blobs/(sha256:[0-9a-f]{64}) HTTP/1.1" (200|206)')
        found = []
        for line in self.log.read_text(errors="replace").splitlines():
            m = pattern.search(line)
            if m and (repo is None or m.group(1) == repo):
                found.append(m.group(2))
        return found

    def requests(self) -> list[str]:
        pattern = re.compile(r'"(GET|HEAD|PUT|POST|PATCH|DELETE) (/v2/\S*) HTTP/1.1" (\d+)')
        return [f"{m.group(1)} {m.group(2)} {m.group(3)}"
                for m in map(pattern.search, self.log.read_text(errors="replace").splitlines()) if m]

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.token_server:
            self.token_server.stop()


# ---------------------------------------------------------------- bearer tokens

class TokenServer:
    """Issues RS256 JWTs the registry trusts (x5c chain to rootcertbundle); signs with openssl."""
    SERVICE = "minirun-test-registry"
    ISSUER = "minirun-test-issuer"

    def __init__(self, workdir: Path, users: dict[str, str]):
        self.key = workdir / "token.key"
        self.cert = workdir / "token.crt"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(self.key),
                        "-out", str(self.cert), "-days", "2", "-subj", "/CN=minirun-test-token"],
                       check=True, capture_output=True)
        der = subprocess.run(["openssl", "x509", "-in", str(self.cert), "-outform", "DER"],
                             check=True, capture_output=True).stdout
        self.x5c = base64.b64encode(der).decode()
        self.users = users
        self.issued: list[dict] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                server.handle(self)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.realm = f"http://127.0.0.1:{self.httpd.server_address[1]}/token"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def handle(self, request) -> None:
        from urllib.parse import parse_qs, urlsplit
        query = parse_qs(urlsplit(request.path).query)
        user = ""
        header = request.headers.get("Authorization", "")
        if header.startswith("Basic "):
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
            if self.users.get(user) != password:
                request.send_response(401)
                request.end_headers()
                return
        access = []
        for scope in query.get("scope", []):
            for part in scope.split(" "):
                kind, name, actions = part.split(":")
                access.append({"type": kind, "name": name, "actions": actions.split(",")})
        self.issued.append({"user": user, "access": access})
        token = self.sign({"iss": self.ISSUER, "sub": user, "aud": query.get("service", [""])[0],
                           "exp": int(time.time()) + 300, "nbf": int(time.time()) - 10,
                           "iat": int(time.time()), "jti": uuid.uuid4().hex, "access": access})
        body = json.dumps({"token": token}).encode()
        request.send_response(200)
        request.send_header("Content-Type", "application/json")
        request.send_header("Content-Length", str(len(body)))
        request.end_headers()
        request.wfile.write(body)

    def sign(self, claims: dict) -> str:
        def b64(data: bytes) -> str:
            return base64.urlsafe_b64encode(data).rstrip(b"=").decode()
        header = {"alg": "RS256", "typ": "JWT", "x5c": [self.x5c]}
        signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
        signature = subprocess.run(["openssl", "dgst", "-sha256", "-sign", str(self.key)],
                                   input=signing_input.encode(), check=True, capture_output=True).stdout
        return f"{signing_input}.{b64(signature)}"

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


# ---------------------------------------------------------------- faults

class FaultProxy:
    """An HTTP proxy in front of the registry that can cut, slow, corrupt or redirect
    responses, and records every request's method, path and headers."""

    def __init__(self, upstream: str, host: str = "127.0.0.1"):
        self.upstream = upstream
        self.seen: list[tuple[str, str, dict]] = []
        self.cut_blob_after: int | None = None      # drop the connection after N body bytes (once per blob)
        self.cut_always = False                     # ... every time, not only once
        self.delay_per_chunk = 0.0
        self.drip_blobs = 0.0                       # blob bodies past their first 4 KiB (a config's whole):
                                                    # a byte at a time, this far apart
        self.delay_per_upload_chunk = 0.0          # read request bodies 16 kB at a time, this far apart
        self.corrupt_blobs = False
        self.corrupt_manifests = False
        self.manifest_override: tuple[bytes, str] | None = None   # (body, content type), digest header dropped
        self._cut_done: set[str] = set()
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                proxy.forward(self)

            do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = do_GET

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer((host, 0), Handler)
        self.httpd.daemon_threads = True
        self.address = f"{host}:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def forward(self, request) -> None:
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host", "connection")}
        self.seen.append((request.command, request.path, dict(request.headers.items())))
        length = int(request.headers.get("Content-Length") or 0)
        body = request.rfile.read(length) if length and not self.delay_per_upload_chunk else None
        if length and self.delay_per_upload_chunk:
            parts = []
            while length > 0:
                parts.append(request.rfile.read(min(length, 16384)))
                if not parts[-1]:
                    break
                length -= len(parts[-1])
                time.sleep(self.delay_per_upload_chunk)
            body = b"".join(parts)
        conn = http.client.HTTPConnection(self.upstream, timeout=30)
        conn.request(request.command, request.path, body=body, headers=headers)
        upstream = conn.getresponse()
        data = upstream.read()
        is_blob = "/blobs/sha256:" in request.path and request.command == "GET"
        is_manifest = "/manifests/" in request.path and request.command == "GET"
        if (is_blob and self.corrupt_blobs or is_manifest and self.corrupt_manifests) and data:
            data = bytes([data[0] ^ 0xFF]) + data[1:]
        drop = {"connection", "transfer-encoding", "content-length"}
        if is_manifest and self.manifest_override:
            data, content_type = self.manifest_override
            drop |= {"docker-content-digest", "content-type"}
        request.send_response(upstream.status)
        if is_manifest and self.manifest_override:
            request.send_header("Content-Type", content_type)
        for key, value in upstream.getheaders():
            if key.lower() not in drop:
                if key.lower() == "location" and value.startswith(f"http://{self.upstream}"):
                    value = value.replace(self.upstream, self.address, 1)
                request.send_header(key, value)
        request.send_header("Content-Length", str(len(data)))
        request.end_headers()
        if request.command == "HEAD":
            return
        cut = None
        if is_blob and self.cut_blob_after is not None and (self.cut_always or request.path not in self._cut_done):
            self._cut_done.add(request.path)
            cut = self.cut_blob_after
        if is_blob and self.drip_blobs:
            try:
                request.wfile.write(data[:4096])
                for byte in data[4096:]:
                    request.wfile.write(bytes([byte]))
                    request.wfile.flush()
                    time.sleep(self.drip_blobs)
            except OSError:                         # the client gave up: what a drip is for
                pass
            return
        sent = 0
        for start in range(0, len(data), 16384):
            chunk = data[start:start + 16384]
            if cut is not None and sent + len(chunk) > cut:
                request.wfile.write(chunk[: cut - sent])
                request.wfile.flush()
                request.close_connection = True
                request.connection.shutdown(socket.SHUT_RDWR)
                return
            request.wfile.write(chunk)
            sent += len(chunk)
            if self.delay_per_chunk:
                time.sleep(self.delay_per_chunk)

    def ranges(self) -> list[str]:
        return [h.get("Range", "") for _, path, h in self.seen if "/blobs/" in path and h.get("Range")]

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
