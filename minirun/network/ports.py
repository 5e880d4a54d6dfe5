"""Published ports (`-p`): the specs, the host's listening sockets, and the proxy.

    -p [HOSTIP:][HOSTPORT:]CONTAINERPORT[/tcp]      HOSTIP 0.0.0.0 when left out
    -p HOSTIP::CONTAINERPORT, -p CONTAINERPORT      a free host port, picked by the kernel
    -p 8080-8081:80-81, -p 80-81                    ranges of the same length

A published port is a userland TCP proxy, as docker-proxy is: no NAT, no
forwarding, no firewall rule. The bridge network routes nothing off the host
(network/__init__.py), and the host already reaches each container's address
through the bridge, so a process in the host's network namespace accepts on
HOSTIP:HOSTPORT and connects to CONTAINER_IP:CONTAINERPORT for each connection.

    parse_all(specs)     the flag values as Bindings, or one UsageError line
    bind(bindings)       Listeners: the host's sockets, bound and listening before
                         the container exists ("port is already allocated" leaves
                         nothing behind); random ports are known from here on
    start_proxy(...)     forks the proxy, which holds the sockets from then on; the
                         runtime kills it (stop_proxy) when the container ends, and
                         PR_SET_PDEATHSIG kills it if the runtime dies first

The proxy keeps no descriptor of the runtime's (a store lock's above all): only
its listening sockets, and /dev/null as stdio; once they are set up it runs as
nobody with no capability. One thread and one selector serve every connection
(Relay), at most MAX_CONNECTIONS at a time, so a container that opens
connections to its own port without end costs the host no thread and no pid.
An end of file is passed on as a half-close (shutdown SHUT_WR), so a client
that shuts down its side still gets the whole answer.
UDP is not relayed: a /udp spec is refused with one line.

Only `run`, `create` and `start` with -p, and ps and inspect, import this module;
selectors is imported only in the proxy process.
"""

from __future__ import annotations

import os

from ..errors import Conflict, RuntimeFailure, UsageError
from ..lib.frozen import dataclass, replace

ANY = "0.0.0.0"
FORMS = ("use -p [HOSTIP:][HOSTPORT:]CONTAINERPORT[/tcp], e.g. -p 8080:80, "
         "-p 127.0.0.1:8080:80 or -p 127.0.0.1::80 (a free host port)")
BACKLOG = 128
CONNECT_TIMEOUT = 10.0


@dataclass(frozen=True)
class Binding:
    """One host address and port published as one container port."""
    host_ip: str                  # "" when the spec named none: 0.0.0.0
    host_port: int                # 0: a free one, picked when bound
    container_port: int
    proto: str = "tcp"

    @property
    def key(self) -> str:
        """Docker's name for the container side: 80/tcp."""
        return f"{self.container_port}/{self.proto}"

    def shown(self) -> str:
        """As docker ps shows a published port: 0.0.0.0:8080->80/tcp."""
        return f"{self.host_ip or ANY}:{self.host_port}->{self.key}"


# ---------------------------------------------------------------- the specs

def parse_all(specs) -> tuple[Binding, ...]:
    """Every -p value as Bindings, in order; a UsageError for the first bad one."""
    out: list[Binding] = []
    for spec in specs:
        out += parse(spec)
    return tuple(out)


def parse(spec: str) -> list[Binding]:
    """One -p value: [HOSTIP:][HOSTPORT:]CONTAINERPORT[/tcp], ports or ranges."""
    from ..errors import brief
    what = f"invalid -p {brief(spec)}"
    text, _, proto = spec.partition("/")
    proto = proto.lower() if proto else "tcp"
    if proto == "udp" or proto == "sctp":
        raise UsageError(f"-p {brief(spec)}: minirun publishes TCP ports only (its port proxy "
                         f"relays no {proto.upper()})",
                         "publish a TCP port, or use --network host to reach the container's UDP ports")
    if proto != "tcp":
        raise UsageError(f"{what}: the protocol is {brief(proto, 20)}, not tcp", FORMS)
    parts = text.split(":")
    if len(parts) > 3:
        raise UsageError(f"{what}: too many ':' (an IPv6 host address is not supported)",
                         "use an IPv4 host address, or leave HOSTIP out (0.0.0.0)")
    parts = [""] * (3 - len(parts)) + parts
    host_ip, host_ports, container_ports = parts
    if host_ip:
        host_ip = _address(host_ip, what)
    if not container_ports:
        raise UsageError(f"{what}: no container port", FORMS)
    if "." in host_ports:
        raise UsageError(f"{what}: {host_ports[:40]!r} stands where the host port goes",
                         "write HOSTIP:HOSTPORT:CONTAINERPORT, or HOSTIP::CONTAINERPORT for a free host port")
    inside = _ports(container_ports, what, "container port")
    outside = _ports(host_ports, what, "host port") if host_ports else [0] * len(inside)
    if len(outside) != len(inside):
        raise UsageError(f"{what}: the host range has {len(outside)} port(s) and the container range "
                         f"{len(inside)}", "give ranges of the same length, e.g. -p 8080-8081:80-81")
    return [Binding(host_ip, h, c) for h, c in zip(outside, inside)]


def _address(text: str, what: str) -> str:
    import ipaddress
    try:
        return str(ipaddress.IPv4Address(text))
    except ValueError:
        raise UsageError(f"{what}: {text[:60]!r} is not an IPv4 address",
                         "give the host address to listen on, e.g. 127.0.0.1, or leave it out "
                         "(0.0.0.0)") from None


def _ports(text: str, what: str, side: str) -> list[int]:
    low, dash, high = text.partition("-")
    first = _port(low, what, side)
    if not dash:
        return [first]
    last = _port(high, what, side)
    if last < first:
        raise UsageError(f"{what}: the {side} range {text[:20]} ends before it starts",
                         "write the range low-high, e.g. 8080-8081")
    return list(range(first, last + 1))


def _port(text: str, what: str, side: str) -> int:
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= 65535:
        raise UsageError(f"{what}: {side} {text[:20]!r} is not a port from 1 to 65535", FORMS)
    return int(text)


def parse_shown(text: str) -> Binding | None:
    """A Binding back from its shown() form (as state.json records it); None if it is not one."""
    host, arrow, inside = text.partition("->")
    ip, _, port = host.rpartition(":")
    number, _, proto = inside.partition("/")
    if not (arrow and port.isdigit() and number.isdigit()):
        return None
    return Binding(ip, int(port), int(number), proto or "tcp")


def docker_map(bindings, requested: bool = False) -> dict:
    """Docker's {"80/tcp": [{"HostIp", "HostPort"}]}: HostConfig.PortBindings as asked
    (requested: "" for an address or port left out), or NetworkSettings.Ports as bound."""
    out: dict[str, list] = {}
    for b in bindings:
        ip = b.host_ip if requested else b.host_ip or ANY
        port = str(b.host_port) if b.host_port or not requested else ""
        out.setdefault(b.key, []).append({"HostIp": ip, "HostPort": port})
    return out


# ---------------------------------------------------------------- the host's sockets

class Listeners:
    """The host's listening sockets of one container, and what they are bound to."""

    def __init__(self, sockets: list, published: tuple[Binding, ...]):
        self.sockets, self.published = sockets, published

    def shown(self) -> tuple[str, ...]:
        return tuple(b.shown() for b in self.published)

    def close(self) -> None:
        """Our copies closed (the proxy's, if it runs, stay open); published stays known."""
        for sock in self.sockets:
            sock.close()
        self.sockets = []


def bind(bindings: tuple[Binding, ...]) -> Listeners:
    """A listening socket for each binding; on any failure none, and one line saying why."""
    import socket
    sockets: list = []
    published: list[Binding] = []
    try:
        for b in bindings:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)   # close-on-exec
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # not blocked by TIME_WAIT
            try:
                sock.bind((b.host_ip or ANY, b.host_port))
                sock.listen(BACKLOG)
            except OSError as exc:
                raise _bind_failed(b, exc) from None
            published.append(replace(b, host_ip=b.host_ip or ANY, host_port=sock.getsockname()[1]))
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return Listeners(sockets, tuple(published))


def _bind_failed(b: Binding, exc: OSError):
    import errno
    where = f"Bind for {b.host_ip or ANY}:{b.host_port}"
    if exc.errno == errno.EADDRINUSE:
        return Conflict(f"{where} failed: port is already allocated",
                        f"publish another host port (-p OTHER:{b.container_port}), or stop what listens "
                        f"on {b.host_port}")
    if exc.errno == errno.EADDRNOTAVAIL:
        return UsageError(f"{where} failed: {b.host_ip} is not an address of this host",
                          "give one of the host's addresses (ip -4 addr), or leave HOSTIP out (0.0.0.0)")
    return RuntimeFailure(f"{where} failed: {exc.strerror or exc}", "publish another host port")


# ---------------------------------------------------------------- the proxy

def start_proxy(listeners: Listeners, address: str) -> int:
    """Fork the proxy for the container at address; it takes over the sockets (ours
    are closed). Returns its pid, for stop_proxy()."""
    parent = os.getpid()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the proxy, exercised by integration tests
        try:
            _proxy(listeners, address, parent)
        finally:
            os._exit(0)
    listeners.close()
    return pid


def stop_proxy(pid: int) -> None:
    """Kill the proxy and reap it: once this returns, its ports are free."""
    import _signal
    try:
        os.kill(pid, _signal.SIGKILL)
    except ProcessLookupError:
        pass
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass


def _proxy(listeners: Listeners, address: str, parent: int) -> None:  # pragma: no cover
    import gc
    import signal
    from ..linux import caps
    gc.disable()            # nothing of the runtime's (its fds are closed below) is ever finalized
    caps.set_name("minirun-proxy")
    os.setpgid(0, 0)        # not in the terminal's foreground group: ^C is the container's
    for signum in (signal.SIGINT, signal.SIGQUIT, signal.SIGTSTP, signal.SIGHUP, signal.SIGPIPE):
        signal.signal(signum, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, ())
    null = os.open(os.devnull, os.O_RDWR)
    for target in (0, 1, 2):
        os.dup2(null, target)
    keep = sorted(sock.fileno() for sock in listeners.sockets)
    low = 3
    for fd in keep:
        os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, 0x7FFFFFFF)
    _room_for_descriptors()
    # the sockets are bound: nothing here needs root any more. nobody, no group,
    # no capability (a uid change clears them, and the death signal: set after)
    os.setgroups([])
    os.setresgid(NOBODY, NOBODY, NOBODY)
    os.setresuid(NOBODY, NOBODY, NOBODY)
    caps.set_dumpable(False)
    caps.set_pdeathsig(signal.SIGKILL)
    if os.getppid() != parent:
        return              # the runtime died before the line above
    Relay(listeners, address).serve()


NOBODY = 65534
MAX_CONNECTIONS = 512       # a proxy's: past it, accepting waits for one to end
CHUNK = 16384               # read from one side only while the other has taken the last chunk


def _room_for_descriptors() -> None:  # pragma: no cover
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 2 * MAX_CONNECTIONS + 64
    if soft < want and (hard == resource.RLIM_INFINITY or soft < hard):
        resource.setrlimit(resource.RLIMIT_NOFILE, (want if hard == resource.RLIM_INFINITY else min(want, hard), hard))


class Relay:  # pragma: no cover - the proxy, exercised by integration tests
    """One thread, one selector: every connection of every published port. A
    connection holds two sockets and at most one pending chunk a direction, so a
    container (or a client) that opens connections without end costs the host at
    most MAX_CONNECTIONS x (2 descriptors + 2 chunks), and never a thread or a pid."""

    def __init__(self, listeners: Listeners, address: str):
        import selectors
        self.selector = selectors.DefaultSelector()
        self.EVENT_READ, self.EVENT_WRITE = selectors.EVENT_READ, selectors.EVENT_WRITE
        self.listeners = [(sock, (address, b.container_port)) for sock, b in zip(listeners.sockets,
                                                                                  listeners.published)]
        self.open = 0
        self.accepting = False

    def serve(self) -> None:
        for sock, _ in self.listeners:
            sock.setblocking(False)
        self._accepting(True)
        while True:
            for key, events in self.selector.select():
                key.data(events)

    def _accepting(self, on: bool) -> None:
        if on == self.accepting:
            return
        self.accepting = on
        for sock, target in self.listeners:
            if on:
                self.selector.register(sock, self.EVENT_READ, lambda _e, s=sock, t=target: self._accept(s, t))
            else:
                self.selector.unregister(sock)

    def _accept(self, listener, target) -> None:
        import socket
        try:
            client, _ = listener.accept()
        except OSError:          # out of descriptors, an aborted handshake: the next one
            return
        upstream = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        client.setblocking(False)
        upstream.setblocking(False)
        err = upstream.connect_ex(target)
        if err not in (0, 115):  # EINPROGRESS
            client.close()
            upstream.close()
            return
        self.open += 1
        if self.open >= MAX_CONNECTIONS:
            self._accepting(False)
        Connection(self, client, upstream)

    def closed(self) -> None:
        self.open -= 1
        if self.open < MAX_CONNECTIONS:
            self._accepting(True)


class Connection:  # pragma: no cover - the proxy, exercised by integration tests
    """A client and its connection to the container: each side's bytes go to the
    other; an end of file is passed on as a half-close (shutdown SHUT_WR), so a
    client that shuts its side down still gets the whole answer. Nothing listening
    in the container: the client's connection is closed."""

    def __init__(self, relay: Relay, client, upstream):
        self.relay, self.client, self.upstream = relay, client, upstream
        self.pending = {client: b"", upstream: b""}      # bytes waiting to go TO that socket
        self.eof = {client: False, upstream: False}      # that socket's peer has sent all
        self.connected = False
        self.shut: set = set()
        # the client waits until the container's side has connected (writable)
        relay.selector.register(upstream, relay.EVENT_WRITE, self._event_for(upstream))
        self.registered = {upstream}

    def _event_for(self, sock):
        return lambda events: self._ready(sock, events)

    def _other(self, sock):
        return self.upstream if sock is self.client else self.client

    def _ready(self, sock, events) -> None:
        import socket
        try:
            if not self.connected:
                if sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                    return self._close()
                self.connected = True
            if events & self.relay.EVENT_WRITE and self.pending[sock]:
                sent = sock.send(self.pending[sock])
                self.pending[sock] = self.pending[sock][sent:]
            if events & self.relay.EVENT_READ:
                data = sock.recv(CHUNK)
                other = self._other(sock)
                if data:
                    self.pending[other] += data
                else:
                    self.eof[sock] = True
            for side in (self.client, self.upstream):   # a finished side, all its bytes sent: half-close
                if self.eof[self._other(side)] and not self.pending[side] and side not in self.shut:
                    self.shut.add(side)
                    side.shutdown(socket.SHUT_WR)
        except (BlockingIOError, InterruptedError):
            pass
        except OSError:
            return self._close()
        if all(self.eof.values()) and not any(self.pending.values()):
            return self._close()
        self._watch()

    def _watch(self) -> None:
        """Read a side only while the other side's pending chunk has gone; write
        a side while it has one."""
        selector = self.relay.selector
        for sock in (self.client, self.upstream):
            other = self._other(sock)
            events = 0
            if not self.eof[sock] and not self.pending[other]:
                events |= self.relay.EVENT_READ
            if self.pending[sock]:
                events |= self.relay.EVENT_WRITE
            if events and sock in self.registered:
                selector.modify(sock, events, self._event_for(sock))
            elif events:
                selector.register(sock, events, self._event_for(sock))
                self.registered.add(sock)
            elif sock in self.registered:
                selector.unregister(sock)
                self.registered.discard(sock)

    def _close(self) -> None:
        for sock in (self.client, self.upstream):
            if sock in self.registered:
                self.relay.selector.unregister(sock)
            sock.close()
        self.registered = set()
        self.relay.closed()
