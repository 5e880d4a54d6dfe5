"""IP address management: which container holds which address on which bridge.

    $MINIRUN_ROOT/networks/
        allocations.json    {"allocations": {"<container id>": {address, prefixlen,
                             gateway, subnet, bridge, veth_host}},
                             "last": {"<subnet>": "<address handed out last>"}}
        allocations.lock    flock held for every read-modify-write

This module owns networks/ and builds every path in it. The file is replaced
atomically (temp file, fsync, rename) under the lock, so a reader never sees
half an update and a killed minirun never leaves a torn file.

The gateway is the subnet's first host address and belongs to the bridge.
Containers get the addresses after it, handed out round-robin from the one
given out last: a just-released address is reused only once the subnet has
wrapped around, so a neighbour's stale ARP entry for it has long expired.
"""

from __future__ import annotations

import ipaddress
import os
import re
from ..lib import jsonio
from ..lib.frozen import asdict, dataclass

from ..errors import Conflict, DamagedRecord, UsageError
from ..store.locks import Locks

DEFAULT_SUBNET = "10.88.0.0/16"
DEFAULT_BRIDGE = "minirun0"
VETH_PREFIX = "mr"
_ID_RE = re.compile(r"[0-9a-f]{8,64}")


@dataclass(frozen=True)
class Allocation:
    address: str          # the container's eth0 address, e.g. 10.88.0.2
    prefixlen: int        # of the subnet, e.g. 16
    gateway: str          # the bridge's address, the container's default route
    bridge: str = DEFAULT_BRIDGE
    veth_host: str = ""   # the host end of the veth pair: mr<first 8 hex of the id>

    @property
    def cidr(self) -> str:
        return f"{self.address}/{self.prefixlen}"

    @property
    def gateway_cidr(self) -> str:
        """What ensure_bridge() puts on the bridge."""
        return f"{self.gateway}/{self.prefixlen}"

    @property
    def subnet(self) -> str:
        return str(ipaddress.ip_interface(self.cidr).network)


# ---------------------------------------------------------------- paths

def directory(root: str) -> str:
    """networks/ under the store: this module owns it."""
    return os.path.join(root, "networks")


def allocations_path(root: str) -> str:
    return os.path.join(directory(root), "allocations.json")


def _locks(root: str) -> Locks:
    os.makedirs(directory(root), 0o700, exist_ok=True)
    return Locks(directory(root))


# ---------------------------------------------------------------- validation

def parse_subnet(text: str) -> ipaddress.IPv4Network:
    """An IPv4 network with room for a gateway and a container, or a UsageError.

    Public so that the CLI can reject a bad --subnet before creating anything."""
    example = f"give an IPv4 network in CIDR form, e.g. {DEFAULT_SUBNET}"
    try:
        given = ipaddress.ip_interface(text.strip())
    except ValueError:
        given = None
    if given is None or "/" not in text:
        raise UsageError(f"invalid subnet {text!r}", example)
    if given.version != 4:
        raise UsageError(f"subnet {text!r}: only IPv4 subnets are supported", example)
    loose = given.network
    if given.ip != loose.network_address:
        raise UsageError(f"subnet {text!r} has host bits set", f"did you mean {loose}?")
    if loose.prefixlen > 30:
        raise UsageError(f"subnet {text!r} is too small: it needs a gateway and at least "
                         "one container address", "use a prefix length of 30 or less")
    if (loose.is_loopback or loose.is_multicast or loose.is_link_local or loose.is_reserved
            or loose.network_address.packed[0] == 0):
        raise UsageError(f"subnet {text!r} is not usable for containers", example)
    return loose


def _check_id(container_id: str) -> str:
    if not _ID_RE.fullmatch(container_id):
        raise UsageError(f"invalid container id {container_id!r}",
                         "a container id is 8 to 64 lowercase hex digits")
    return container_id


def veth_name(container_id: str) -> str:
    """mr + 8 hex digits: 10 characters, within the kernel's 15-byte IFNAMSIZ limit."""
    return VETH_PREFIX + _check_id(container_id)[:8]


# ---------------------------------------------------------------- the file

def _read(root: str) -> dict:
    """The file, checked (store/readers.py): DamagedRecord when it is damaged."""
    from ..store import readers
    path = allocations_path(root)
    hint = "stop all bridged containers, then `minirun fsck --repair` (it removes the file)"
    try:
        doc = readers.read_json(path, 64 << 20, hint)
    except FileNotFoundError:
        doc = {}
    readers.check(doc, path, "the address allocations", {"allocations": readers.OBJECT,
                                                          "last": readers.OBJECT}, (), hint)
    kinds = {"address": readers.STR, "prefixlen": readers.INT, "gateway": readers.STR,
             "bridge": readers.STR, "veth_host": readers.STR}
    for cid, record in doc.get("allocations", {}).items():
        what = f"the allocation of {cid[:12]!r}"
        readers.check(record, path, what, kinds, tuple(kinds), hint)
        _check_address(path, what, record["address"], hint)
        _check_address(path, what, record["gateway"], hint)
    for subnet, last in doc.get("last", {}).items():
        _check_address(path, f"the last address of {subnet[:40]!r}", last, hint)
    doc.setdefault("allocations", {})
    doc.setdefault("last", {})
    return doc


def _check_address(path: str, what: str, value: object, hint: str) -> None:
    try:
        ipaddress.IPv4Address(value)
    except ValueError:
        raise DamagedRecord(path, f"{what}: {str(value)[:40]!r} is not an IPv4 address", hint) from None


def _write(root: str, doc: dict) -> None:
    """Replace the file in one rename. Under the lock, so any temp file is a crash's leftover."""
    folder = directory(root)
    for name in os.listdir(folder):
        if name.startswith(".allocations.json."):
            os.unlink(os.path.join(folder, name))
    tmp = os.path.join(folder, f".allocations.json.{os.getpid()}")
    with open(tmp, "w") as f:
        jsonio.dump(doc, f, indent=1, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, allocations_path(root))


def _record(alloc: Allocation) -> dict:
    return dict(asdict(alloc), subnet=alloc.subnet)


def _allocation(record: dict) -> Allocation:
    return Allocation(record["address"], record["prefixlen"], record["gateway"],
                      record["bridge"], record["veth_host"])


# ---------------------------------------------------------------- the API

def allocate(root: str, container_id: str, subnet: str = DEFAULT_SUBNET,
             bridge: str = DEFAULT_BRIDGE) -> Allocation:
    """Give the container a free address in `subnet`; calling again returns the same one."""
    network = parse_subnet(subnet)
    veth = veth_name(container_id)
    with _locks(root).hold("allocations"):
        doc = _read(root)
        held = doc["allocations"]
        if container_id in held:
            return _existing(held[container_id], container_id, network, bridge)
        for other_id, record in held.items():
            if record["veth_host"] == veth:
                raise Conflict(f"container {container_id[:12]} would reuse interface name {veth} "
                               f"of container {other_id[:12]}", "run the container again (new id)")
        used = {int(ipaddress.IPv4Address(r["address"])) for r in held.values()}
        address = _pick(network, used, doc["last"].get(str(network)))
        alloc = Allocation(str(address), network.prefixlen, str(network.network_address + 1),
                           bridge, veth)
        held[container_id] = _record(alloc)
        doc["last"][str(network)] = str(address)
        _write(root, doc)
    return alloc


def _existing(record: dict, container_id: str, network, bridge: str) -> Allocation:
    alloc = _allocation(record)
    if alloc.subnet != str(network) or alloc.bridge != bridge:
        raise Conflict(f"container {container_id[:12]} already holds {alloc.cidr} on "
                       f"{alloc.bridge}", "release it before allocating on another network")
    return alloc


def _pick(network: ipaddress.IPv4Network, used: set[int],
          last: str | None) -> ipaddress.IPv4Address:
    """The first free address after `last`, wrapping around; skips network, gateway, broadcast."""
    first = int(network.network_address) + 2
    count = int(network.broadcast_address) - first
    start = 0
    if last is not None and int(ipaddress.IPv4Address(last)) in range(first, first + count):
        start = int(ipaddress.IPv4Address(last)) - first + 1
    for step in range(count):
        candidate = first + (start + step) % count
        if candidate not in used:
            return ipaddress.IPv4Address(candidate)
    raise Conflict(f"subnet {network} is full: all {count} container addresses are in use",
                   "remove containers you no longer need, or configure a larger subnet")


def lookup(root: str, container_id: str) -> Allocation | None:
    """The container's allocation, if it holds one (no lock: the file is replaced atomically)."""
    record = _read(root)["allocations"].get(container_id)
    return _allocation(record) if record else None


def allocations(root: str) -> dict[str, Allocation]:
    """Every allocation, by container id."""
    return {cid: _allocation(r) for cid, r in _read(root)["allocations"].items()}


def release(root: str, container_id: str) -> Allocation | None:
    """Free the container's address; returns what it held (None when it held nothing)."""
    if not os.path.exists(allocations_path(root)):
        return None
    with _locks(root).hold("allocations"):
        doc = _read(root)
        record = doc["allocations"].pop(container_id, None)
        if record is not None:
            _write(root, doc)
    return _allocation(record) if record else None


def release_stale_addresses(store) -> None:
    """Addresses of containers that have ended without giving them back (their runtime
    died). Only containers known to have ended: one being created right now has an
    address and no record yet, and must keep it."""
    from ..store.containers import effective_state
    known = set(store.containers.ids())
    for cid in allocations(store.root):
        try:
            ended = cid in known and effective_state(store.containers.state(cid)).status == "exited"
        except DamagedRecord:
            ended = False                      # it may still run: keep its address
        if ended:
            release(store.root, cid)
