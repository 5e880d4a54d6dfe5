"""A small HTTP/1.1 client for registries: keep-alive connections (one per host
and thread), redirects that never forward credentials to another host, and the
transport policy: HTTPS with the system CAs, plain HTTP only for localhost,
127.0.0.1, ::1 and registries the user lists as insecure. The policy holds for
every URL fetched, not only the registry's own: a redirect, a token realm, an
upload location that names plain HTTP to any other host is refused.

A registry is an image source like any other, so what it sends is bounded in
time as well as size: every byte of a response (status line, headers, body)
comes through _Paced, which gives up when a window of TIMEOUT seconds
(MINIRUN_REGISTRY_TIMEOUT) brings fewer than LOW_SPEED bytes a second, as
curl's --speed-limit does (of the body, what the caller gets counts, never the
chunked encoding's framing, which a registry can pad without end). The
socket's own timeout alone let a registry that sends one byte every 29 s hold
a pull, and the store's gc lock, forever. A fast registry is bounded by size
instead: a response's head (status line, headers,
any number of `100 Continue` answers before them) and a chunked body's trailer
get HEAD_LIMIT bytes each, and the body of a redirect or an error answer is read
to at most 1 MiB (discard())."""

from __future__ import annotations

import http.client
import io
import os
import socket
import ssl
import threading
import time
import urllib.parse
from ...lib.frozen import dataclass, field

from ...errors import RegistryError, RegistryUnavailable, UsageError, printable

TIMEOUT = 30.0                      # seconds: connect, and each low-speed window (MINIRUN_REGISTRY_TIMEOUT)
LOW_SPEED = 1024                    # bytes a second, averaged over a window, or the response is given up
DISCARD_LIMIT = 1 << 20             # the most read of a body nobody needs (a redirect's, a 401's)
PIECE = 8 << 10                     # a body is read this much at a time (see Response.read)
HEAD_LIMIT = 256 << 10              # the most read of a response's head, and of a chunked body's trailer
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


def timeout_setting() -> float:
    """MINIRUN_REGISTRY_TIMEOUT in seconds, else TIMEOUT; a value that is not a
    positive number of seconds is a usage error."""
    value = os.environ.get("MINIRUN_REGISTRY_TIMEOUT", "").strip()
    if not value:
        return TIMEOUT
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not 0 < seconds < 1e6:
        raise UsageError(f"MINIRUN_REGISTRY_TIMEOUT={printable(value)[:40]} is not a number of seconds",
                         "give a positive number, e.g. MINIRUN_REGISTRY_TIMEOUT=60")
    return seconds


class Stalled(TimeoutError):
    """A response that came slower than LOW_SPEED for a whole window."""


class Oversized(http.client.HTTPException):
    """A response head or trailer over HEAD_LIMIT."""


class _Paced(io.RawIOBase):
    """The socket as a response reads it, with a low-speed limit: the bytes that
    arrive in each window of `window` seconds must average LOW_SPEED a second, or
    the next read raises Stalled. A recv waits at most to the end of its window;
    the socket gets its own timeout back after each one, for the next request.
    What counts: the bytes of the head and the trailer, read inside bounded(),
    where reads past its byte budget raise Oversized; and the body's bytes the
    response hands on (credit()), not the chunk-size lines around them."""

    def __init__(self, sock: socket.socket, sockio, window: float):
        super().__init__()
        self._sock, self._io, self._window = sock, sockio, window
        self._start, self._got = time.monotonic(), 0
        self._budget: int | None = None

    def readable(self) -> bool:
        return True

    def credit(self, n: int) -> None:
        self._got += n

    def bounded(self, limit: int, what: str, read):
        """read(), with at most `limit` more bytes from the socket."""
        self._budget = limit
        try:
            return read()
        except Oversized:
            raise Oversized(f"{what} over {limit >> 10} KiB") from None
        finally:
            self._budget = None

    def readinto(self, buffer) -> int:
        if self._budget is not None:
            if self._budget <= 0:
                raise Oversized()
            buffer = memoryview(buffer)[:self._budget]
        while True:
            now = time.monotonic()
            left = self._start + self._window - now
            if left <= 0:
                if self._got < LOW_SPEED * self._window:
                    raise Stalled(f"it sent {self._got} bytes in {self._window:g} s, under {LOW_SPEED} a second "
                                  f"(MINIRUN_REGISTRY_TIMEOUT=SECONDS sets that window)")
                self._start, self._got, left = now, 0, self._window
            timeout = self._sock.gettimeout()
            self._sock.settimeout(left)
            try:
                n = self._sock.recv_into(buffer)
            except TimeoutError:
                continue                    # the window ended with the recv still waiting: judge it
            finally:
                self._sock.settimeout(timeout)
            if self._budget is not None:
                self._budget -= n
                self._got += n
            return n

    def close(self) -> None:
        if not self.closed:
            self._io.close()                # the socket's reference count, as http.client keeps it
        super().close()


class _PacedResponse(http.client.HTTPResponse):
    """http.client's response on a _Paced socket, its head and trailer bounded
    (http.client skips `100 Continue` answers and trailer lines without limit)."""

    def __init__(self, sock, window: float, *args, **kwargs):
        super().__init__(sock, *args, **kwargs)
        self._paced = _Paced(sock, self.fp.detach(), window)
        self.fp = io.BufferedReader(self._paced)

    def begin(self):
        self._paced.bounded(HEAD_LIMIT, "status line and headers", super().begin)

    def _read_and_discard_trailer(self):
        self._paced.bounded(HEAD_LIMIT, "chunked body's trailer", super()._read_and_discard_trailer)

    def read(self, amt=None):
        data = super().read(amt)
        self._paced.credit(len(data))
        return data


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    url: str
    _raw: http.client.HTTPResponse | None = field(default=None, repr=False)
    _body: bytes | None = None
    _conn: http.client.HTTPConnection | None = field(default=None, repr=False)

    def header(self, name: str, default: str = "") -> str:
        return self.headers.get(name.lower(), default)

    def read(self, n: int) -> bytes:
        """At most n bytes of the body (never all of it unbounded: a registry decides
        its length), read PIECE at a time: http.client keeps each chunk of a chunked
        body as an object of its own until the read is done, and 16 MiB sent as
        1-byte chunks took 1.5 GB; the pace (_Paced) is credited piece by piece."""
        if self._body is not None:
            data, self._body = self._body[:n], self._body[n:]
            return data
        try:
            if n <= PIECE:
                return self._raw.read(n)
            out = bytearray()
            while len(out) < n:
                piece = self._raw.read(min(PIECE, n - len(out)))
                if not piece:
                    break
                out += piece
            return bytes(out)
        except (OSError, http.client.HTTPException) as exc:
            self.close()
            netloc = urllib.parse.urlsplit(self.url).netloc
            if isinstance(exc, Stalled):
                raise RegistryUnavailable(f"{netloc} stalled: {exc}") from None
            if isinstance(exc, Oversized):
                raise RegistryError(f"{netloc} sent a malformed answer: {exc}") from None
            raise RegistryUnavailable(f"connection to {netloc} broke: {exc or type(exc).__name__}") from None

    def body(self, limit: int = 16 << 20) -> bytes:
        data = self.read(limit + 1)
        if len(data) > limit:
            self.close()
            raise RegistryError(f"{self.url}: response larger than {limit >> 20} MiB")
        return data

    def discard(self) -> None:
        """Drop what is left of a body nobody reads (a redirect's, a 401's): at most
        DISCARD_LIMIT bytes are read, and a longer one closes the connection."""
        if len(self.read(DISCARD_LIMIT + 1)) > DISCARD_LIMIT:
            self.close()

    def close(self) -> None:
        """Close the response; with some of its body unread, its connection too, which
        could not carry another request (the pool opens a new one when asked)."""
        if self._raw is not None:
            whole = self._raw.isclosed()
            self._raw.close()
            if not whole and self._conn is not None:
                self._conn.close()


def split_url(url: str) -> urllib.parse.SplitResult:
    """url's parts, when it is one we may fetch: http or https, with a host and a
    port that is a number (a registry's redirect, token realm or upload location
    names any URL it likes), and plain HTTP only where scheme_for() allows it."""
    try:
        parts = urllib.parse.urlsplit(url)     # ValueError: a bracket left open, say
        port = parts.port                      # ValueError: not a number, or out of range
    except ValueError:
        raise _bad_redirect(url) from None
    if parts.scheme not in ("http", "https") or not parts.hostname or port == -1:
        raise _bad_redirect(url)
    hostport = parts.netloc.rpartition("@")[2].lower()
    if parts.scheme == "http" and scheme_for(hostport) != "http":
        raise RegistryError(f"refused to fetch over plain HTTP: {printable(url)[:200]}",
                            f"plain HTTP is used only for localhost and MINIRUN_INSECURE_REGISTRIES; "
                            f"if it is intended here, list it: MINIRUN_INSECURE_REGISTRIES={printable(hostport)[:100]}")
    return parts


def join_url(base: str, location: str) -> str:
    """A Location header (a redirect's, an upload's) against the URL it answered."""
    try:
        return urllib.parse.urljoin(base, location)
    except ValueError:
        raise _bad_redirect(location) from None


def _bad_redirect(location: str) -> RegistryError:
    return RegistryError(f"the registry sent minirun to a URL it cannot fetch: {printable(location)[:200]}",
                         "only http:// and https:// URLs with a host and a numeric port are followed")


class Http:
    def __init__(self, timeout: float | None = None):
        self.timeout = timeout if timeout is not None else timeout_setting()
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
            conn.response_class = lambda sock, *args, **kwargs: _PacedResponse(sock, self.timeout, *args, **kwargs)
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
            parts = split_url(url)
            sent = dict(headers)
            if auth_for is not None and parts.netloc != auth_for:
                sent.pop("Authorization", None)
            response = self._send(method, parts, sent, body)
            if response.status in (301, 302, 303, 307, 308) and response.header("location"):
                response.discard()
                url = join_url(url, response.header("location"))
                if response.status == 303:
                    method, body = "GET", None
                continue
            return response
        raise RegistryError(f"too many redirects fetching {url}")

    def _send(self, method: str, parts, headers: dict, body) -> Response:
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        headers.setdefault("User-Agent", USER_AGENT)
        for name, value in headers.items():
            if not (value.isascii() and value.isprintable()):
                raise RegistryError(f"a request to {parts.netloc} would carry a {name} header with a control "
                                    f"or non-ASCII character (a token or location the registry sent)")
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
                if isinstance(exc, Stalled):
                    raise RegistryUnavailable(f"registry {parts.netloc} stalled: {exc}") from None
                if isinstance(exc, http.client.HTTPException):    # Oversized, LineTooLong, BadStatusLine...
                    raise RegistryError(f"registry {parts.netloc} sent a malformed answer: {exc}") from None
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
            return Response(raw.status, headers_lower, url, raw, None, conn)
        raise AssertionError("unreachable")
