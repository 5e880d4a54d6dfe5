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
its listening sockets, and /dev/null as stdio. Each connection is two threads,
one per direction; an end of file is passed on as a half-close (shutdown
SHUT_WR), so a client that shuts down its side still gets the whole answer.
UDP is not relayed: a /udp spec is refused with one line.

Only `run`, `create` and `start` with -p, and ps and inspect, import this module;
threading is imported only in the proxy process.
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
    caps.set_pdeathsig(signal.SIGKILL)
    if os.getppid() != parent:
        return              # the runtime died before the line above
    caps.set_name("minirun-proxy")
    os.setpgid(0, 0)        # not in the terminal's foreground group: ^C is the container's
    for signum in (signal.SIGINT, signal.SIGQUIT, signal.SIGTSTP, signal.SIGHUP):
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
    _serve(listeners, address)


def _serve(listeners: Listeners, address: str) -> None:  # pragma: no cover
    import threading
    for sock, b in zip(listeners.sockets, listeners.published):
        threading.Thread(target=_accept, args=(sock, (address, b.container_port)), daemon=True).start()
    threading.Event().wait()


def _accept(listener, target: tuple[str, int]) -> None:  # pragma: no cover
    import threading
    import time
    while True:
        try:
            client, _ = listener.accept()
        except OSError:          # out of descriptors, an aborted handshake: go on
            time.sleep(0.05)
            continue
        threading.Thread(target=_relay, args=(client, target), daemon=True).start()


def _relay(client, target: tuple[str, int]) -> None:  # pragma: no cover
    """One connection: to the container, then both ways until both sides are done.
    Nothing listening there (yet): the client's connection is closed."""
    import socket
    import threading
    try:
        upstream = socket.create_connection(target, timeout=CONNECT_TIMEOUT)
        upstream.settimeout(None)
    except OSError:
        client.close()
        return
    back = threading.Thread(target=_copy, args=(upstream, client), daemon=True)
    back.start()
    _copy(client, upstream)
    back.join()
    client.close()
    upstream.close()


def _copy(source, sink) -> None:  # pragma: no cover
    """source's bytes into sink; its end of file as sink's half-close. On an error
    both connections are shut, so the other direction ends too."""
    import socket
    try:
        while data := source.recv(65536):
            sink.sendall(data)
        sink.shutdown(socket.SHUT_WR)
    except OSError:
        for sock in (source, sink):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
