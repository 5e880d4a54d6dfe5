"""A small HTTP/1.1 client for registries: keep-alive connections (one per host
and thread), redirects that never forward credentials to another host, and the
transport policy: HTTPS with the system CAs, plain HTTP only for localhost,
127.0.0.1, ::1 and registries the user lists as insecure."""

from __future__ import annotations

import http.client
import os
import socket
import ssl
import threading
import urllib.parse
from ...lib.frozen import dataclass, field

from ...errors import RegistryError, RegistryUnavailable, printable

TIMEOUT = 30.0
MAX_REDIRECTS = 5
LOOPBACK = ("localhost", "127.0.0.1", "::1", "[::1]")
USER_AGENT = "minirun/0.1"


def insecure_registries() -> set[str]:
    """Registries (host or host:port) for which plain HTTP is allowed: MINIRUN_INSECURE_REGISTRIES=a,b,
    else insecure_registries in the config file."""
    from ... import config
    return set(config.get("insecure_registries"))


def scheme_for(registry: str) -> str:
    host = registry.rsplit(":", 1)[0] if not registry.endswith("]") else registry
    if host in LOOPBACK or registry in insecure_registries() or host in insecure_registries():
        return "http"
    return "https"


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    url: str
    _raw: http.client.HTTPResponse | None = field(default=None, repr=False)
    _body: bytes | None = None

    def header(self, name: str, default: str = "") -> str:
        return self.headers.get(name.lower(), default)

    def read(self, n: int = -1) -> bytes:
        if self._body is not None:
            data, self._body = (self._body, b"") if n < 0 else (self._body[:n], self._body[n:])
            return data
        try:
            return self._raw.read(n) if n >= 0 else self._raw.read()
        except (OSError, http.client.HTTPException) as exc:
            raise RegistryUnavailable(f"connection to {urllib.parse.urlsplit(self.url).netloc} broke: "
                                f"{exc or type(exc).__name__}") from None

    def body(self, limit: int = 16 << 20) -> bytes:
        data = self.read(limit + 1)
        if len(data) > limit:
            raise RegistryError(f"{self.url}: response larger than {limit >> 20} MiB")
        return data

    def close(self) -> None:
        if self._raw is not None:
            self._raw.close()


def _split(url: str) -> urllib.parse.SplitResult:
    """url's parts, when it is one we may fetch: http or https, with a host and a
    port that is a number (a registry's redirect names any URL it likes)."""
    parts = urllib.parse.urlsplit(url)
    try:
        port = parts.port                      # ValueError: not a number, or out of range
    except ValueError:
        port = -1
    if parts.scheme not in ("http", "https") or not parts.hostname or port == -1:
        raise _bad_redirect(url)
    return parts


def _bad_redirect(location: str) -> RegistryError:
    return RegistryError(f"the registry sent minirun to a URL it cannot fetch: {printable(location)[:200]}",
                         "only http:// and https:// URLs with a host and a numeric port are followed")


class Http:
    def __init__(self, timeout: float = TIMEOUT):
        self.timeout = timeout
        self._local = threading.local()
        self._tls = ssl.create_default_context()

    def _connection(self, scheme: str, netloc: str) -> http.client.HTTPConnection:
        pool = self._local.__dict__.setdefault("pool", {})
        conn = pool.get((scheme, netloc))
        if conn is None:
            if scheme == "https":
                conn = http.client.HTTPSConnection(netloc, timeout=self.timeout, context=self._tls)
            else:
                conn = http.client.HTTPConnection(netloc, timeout=self.timeout)
            pool[(scheme, netloc)] = conn
        return conn

    def _drop(self, scheme: str, netloc: str) -> None:
        conn = self._local.__dict__.get("pool", {}).pop((scheme, netloc), None)
        if conn is not None:
            conn.close()

    def request(self, method: str, url: str, headers: dict[str, str] | None = None,
                body=None, auth_for: str | None = None) -> Response:
        """One request, following redirects. `headers` may hold Authorization: it is sent
        only to the host named by auth_for (the registry), never to a redirect target."""
        headers = dict(headers or {})
        for _ in range(MAX_REDIRECTS + 1):
            parts = _split(url)
            sent = dict(headers)
            if auth_for is not None and parts.netloc != auth_for:
                sent.pop("Authorization", None)
            response = self._send(method, parts, sent, body)
            if response.status in (301, 302, 303, 307, 308) and response.header("location"):
                response.read()
                try:
                    url = urllib.parse.urljoin(url, response.header("location"))
                except ValueError:
                    raise _bad_redirect(response.header("location")) from None
                if response.status == 303:
                    method, body = "GET", None
                continue
            return response
        raise RegistryError(f"too many redirects fetching {url}")

    def _send(self, method: str, parts, headers: dict, body) -> Response:
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        headers.setdefault("User-Agent", USER_AGENT)
        for attempt in (1, 2):
            conn = self._connection(parts.scheme, parts.netloc)
            try:
                conn.request(method, path or "/", body=body, headers=headers)
                raw = conn.getresponse()
            except ssl.SSLError as exc:
                self._drop(parts.scheme, parts.netloc)
                raise RegistryError(
                    f"TLS with {parts.netloc} failed: {exc.reason or exc}",
                    f"if it serves plain HTTP, list it: MINIRUN_INSECURE_REGISTRIES={parts.netloc}") from None
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError) as exc:
                # a kept-alive connection the server closed: retry once on a fresh one
                self._drop(parts.scheme, parts.netloc)
                if attempt == 2 or (body is not None and not isinstance(body, bytes)):
                    raise RegistryUnavailable(f"{parts.netloc} closed the connection: {exc}") from None
                continue
            except (OSError, http.client.HTTPException, UnicodeError) as exc:
                self._drop(parts.scheme, parts.netloc)
                reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc) or type(exc).__name__
                if isinstance(exc, socket.gaierror):
                    reason = f"cannot resolve host ({reason})"
                elif isinstance(exc, UnicodeError):      # idna: a label over 63 characters, say
                    reason = "its host name is not one DNS can hold (a label empty or over 63 characters)"
                raise RegistryUnavailable(f"cannot reach registry {parts.netloc}: {reason}",
                                    "check the registry address and your network") from None
            headers_lower = {k.lower(): v for k, v in raw.getheaders()}
            url = f"{parts.scheme}://{parts.netloc}{path}"
            if method == "HEAD":
                raw.read()
                return Response(raw.status, headers_lower, url, None, b"")
            return Response(raw.status, headers_lower, url, raw)
        raise AssertionError("unreachable")
