"""minirun.network pieces that need no root: addresses, /etc files, modes."""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys

import pytest

from minirun.errors import Conflict, MinirunError, UsageError
from minirun.network import files, ipam, parse_mode

CID_A = "a" * 64
CID_B = "b" * 64
CID_C = "c" * 64
CID_D = "d" * 64


def allocations_file(root) -> dict:
    with open(os.path.join(root, "networks", "allocations.json")) as f:
        return json.load(f)


# ---------------------------------------------------------------- modes

@pytest.mark.parametrize("text, mode", [("none", "none"), ("host", "host"),
                                        ("bridge", "bridge"), (" Bridge ", "bridge")])
def test_parse_mode_accepts_the_three_modes(text, mode):
    assert parse_mode(text) == mode


def test_parse_mode_lists_the_valid_modes():
    with pytest.raises(UsageError) as info:
        parse_mode("overlay")
    assert "overlay" in info.value.message
    assert "none, host, bridge" in info.value.hint


def test_stdlib_modules_never_import_pyroute2():
    code = ("import sys, minirun.network, minirun.network.ipam, minirun.network.files, "
            "minirun.network.loopback; assert 'pyroute2' not in sys.modules, 'pyroute2 imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


# ---------------------------------------------------------------- allocation

def test_first_allocation_takes_the_address_after_the_gateway(tmp_path):
    alloc = ipam.allocate(str(tmp_path), CID_A)
    assert alloc == ipam.Allocation("10.88.0.2", 16, "10.88.0.1", "minirun0", "mraaaaaaaa")
    assert alloc.cidr == "10.88.0.2/16"
    assert alloc.gateway_cidr == "10.88.0.1/16"
    assert alloc.subnet == "10.88.0.0/16"


def test_allocations_are_distinct_and_persisted(tmp_path):
    root = str(tmp_path)
    a = ipam.allocate(root, CID_A, "10.213.5.0/24", "mrt1")
    b = ipam.allocate(root, CID_B, "10.213.5.0/24", "mrt1")
    assert (a.address, b.address) == ("10.213.5.2", "10.213.5.3")
    assert b.bridge == "mrt1" and b.veth_host == "mrbbbbbbbb"
    assert ipam.lookup(root, CID_B) == b
    assert ipam.allocations(root) == {CID_A: a, CID_B: b}
    assert set(allocations_file(root)["allocations"]) == {CID_A, CID_B}
    assert sorted(os.listdir(tmp_path / "networks")) == ["allocations.json", "allocations.lock"]


def test_allocating_again_returns_the_same_address(tmp_path):
    first = ipam.allocate(str(tmp_path), CID_A)
    assert ipam.allocate(str(tmp_path), CID_A) == first


def test_allocating_again_on_another_network_is_a_conflict(tmp_path):
    ipam.allocate(str(tmp_path), CID_A)
    with pytest.raises(Conflict):
        ipam.allocate(str(tmp_path), CID_A, "10.99.0.0/16")


def test_release_frees_the_address_but_it_is_not_reused_at_once(tmp_path):
    root = str(tmp_path)
    a = ipam.allocate(root, CID_A, "10.213.6.0/24")
    assert ipam.release(root, CID_A) == a
    assert ipam.lookup(root, CID_A) is None
    assert ipam.release(root, CID_A) is None
    assert ipam.allocate(root, CID_B, "10.213.6.0/24").address == "10.213.6.3"


def test_release_without_any_allocation_creates_nothing(tmp_path):
    assert ipam.release(str(tmp_path), CID_A) is None
    assert ipam.allocations(str(tmp_path)) == {}
    assert not (tmp_path / "networks").exists()


def test_addresses_wrap_around_to_freed_ones(tmp_path):
    root = str(tmp_path)
    subnet = "10.213.7.0/29"       # gateway .1, containers .2 to .6
    held = [ipam.allocate(root, f"{i:08x}", subnet).address for i in range(5)]
    assert held == [f"10.213.7.{n}" for n in range(2, 7)]
    ipam.release(root, f"{2:08x}")
    assert ipam.allocate(root, "ffffffff", subnet).address == "10.213.7.4"


def test_a_full_subnet_is_a_clear_error(tmp_path):
    root = str(tmp_path)
    ipam.allocate(root, CID_A, "10.213.8.0/30")    # the one container address: .2
    with pytest.raises(Conflict) as info:
        ipam.allocate(root, CID_B, "10.213.8.0/30")
    assert "10.213.8.0/30 is full" in info.value.message
    assert ipam.lookup(root, CID_B) is None


def test_stale_addresses_are_only_those_of_containers_known_to_have_ended(store):
    """A: no container yet (being created: keeps it); B: exited (freed); C: running
    (keeps it); D: its state is damaged (it may still run: keeps it)."""
    from minirun.store import ContainerConfig, ContainerState
    for cid in (CID_A, CID_B, CID_C, CID_D):
        ipam.allocate(store.root, cid)
    store.containers.create(CID_B, ContainerConfig("b", ()), {}, state=ContainerState("exited", exit_code=0))
    store.containers.create(CID_C, ContainerConfig("c", ()), {},
                            state=ContainerState("running", pid=os.getpid(), pid_start=_start(os.getpid())))
    store.containers.create(CID_D, ContainerConfig("d", ()), {})
    with open(store.containers.path(CID_D, "state.json"), "w") as f:
        f.write('{"status": "runn')
    ipam.release_stale_addresses(store)
    assert set(ipam.allocations(store.root)) == {CID_A, CID_C, CID_D}
    ipam.release_stale_addresses(store)
    assert set(ipam.allocations(store.root)) == {CID_A, CID_C, CID_D}


def _start(pid: int) -> int:
    from minirun.linux.procfs import start_time
    return start_time(pid)


def test_same_veth_name_for_two_containers_is_a_conflict(tmp_path):
    ipam.allocate(str(tmp_path), "12345678" + "0" * 56)
    with pytest.raises(Conflict):
        ipam.allocate(str(tmp_path), "12345678" + "1" * 56)


@pytest.mark.parametrize("subnet, hint_part", [
    ("nonsense", "CIDR"), ("10.88.0.0/33", "CIDR"), ("10.88.0.1/16", "10.88.0.0/16"),
    ("fd00::/64", "CIDR"), ("10.88.0.0/31", "30 or less"), ("127.0.0.0/8", "CIDR"),
    ("224.0.0.0/24", "CIDR"), ("0.0.0.0/0", "CIDR"), ("10.88.0.0", "CIDR"), ("", "CIDR"),
])
def test_bad_subnets_are_usage_errors(tmp_path, subnet, hint_part):
    with pytest.raises(UsageError) as info:
        ipam.allocate(str(tmp_path), CID_A, subnet)
    assert hint_part in info.value.line()
    assert not (tmp_path / "networks" / "allocations.json").exists()


def test_a_netmask_subnet_is_accepted():
    assert str(ipam.parse_subnet("10.213.0.0/255.255.0.0")) == "10.213.0.0/16"


@pytest.mark.parametrize("cid", ["", "xyz12345", "ABCDEF01", "abc"])
def test_bad_container_ids_are_usage_errors(tmp_path, cid):
    with pytest.raises(UsageError):
        ipam.allocate(str(tmp_path), cid)


def test_a_corrupt_file_is_an_error_with_a_hint(tmp_path):
    (tmp_path / "networks").mkdir()
    (tmp_path / "networks" / "allocations.json").write_text("{not json")
    with pytest.raises(MinirunError) as info:
        ipam.allocate(str(tmp_path), CID_A)
    assert "corrupt" in info.value.message and info.value.hint


def test_a_crash_leftover_temp_file_is_cleaned(tmp_path):
    ipam.allocate(str(tmp_path), CID_A)
    (tmp_path / "networks" / ".allocations.json.99999").write_text("{")
    ipam.allocate(str(tmp_path), CID_B)
    assert sorted(os.listdir(tmp_path / "networks")) == ["allocations.json", "allocations.lock"]


def _allocate_many(root: str, start: int, queue) -> None:
    queue.put([ipam.allocate(root, f"{start + i:08x}", "10.213.9.0/24").address
               for i in range(20)])


def test_concurrent_processes_never_share_an_address(tmp_path):
    queue = multiprocessing.get_context("fork").Queue()
    procs = [multiprocessing.get_context("fork").Process(
        target=_allocate_many, args=(str(tmp_path), n * 100, queue)) for n in range(4)]
    for proc in procs:
        proc.start()
    addresses = [a for _ in procs for a in queue.get(timeout=30)]
    for proc in procs:
        proc.join(timeout=30)
    assert len(addresses) == 80 == len(set(addresses))
    assert len(ipam.allocations(str(tmp_path))) == 80


# ---------------------------------------------------------------- /etc files

def write_host_resolv(tmp_path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_hosts_names_the_container_address(tmp_path):
    rendered = files.render_etc_files("web", "10.88.0.2", "bridge", host_files=(str(tmp_path / "missing"),))
    assert set(rendered) == {"hosts", "hostname", "resolv.conf"}
    assert rendered["hosts"] == ("127.0.0.1\tlocalhost\n"
                                 "::1\tlocalhost ip6-localhost ip6-loopback\n"
                                 "10.88.0.2\tweb\n")
    assert rendered["hostname"] == "web\n"


def test_hosts_without_an_address_uses_127_0_1_1(tmp_path):
    rendered = files.render_etc_files("box", None, "none")
    assert rendered["hosts"].endswith("127.0.1.1\tbox\n")
    assert "nameserver" not in rendered["resolv.conf"]


HOST_RESOLV = ("# generated\nsearch example.com\nnameserver 127.0.0.53\nnameserver 10.1.2.3\n"
               "nameserver ::1\nnameserver fd00::53\noptions edns0\n")


def test_bridge_resolv_conf_drops_loopback_and_ipv6_nameservers(tmp_path):
    host = write_host_resolv(tmp_path, "resolv", HOST_RESOLV)
    text = files.resolv_text("bridge", (host,))
    assert text == ("# generated\nsearch example.com\nnameserver 10.1.2.3\noptions edns0\n")


def test_host_resolv_conf_is_copied_as_it_is(tmp_path):
    host = write_host_resolv(tmp_path, "resolv", HOST_RESOLV)
    assert files.resolv_text("host", (host,)) == HOST_RESOLV


def test_bridge_falls_back_to_systemd_resolved_upstreams(tmp_path):
    stub = write_host_resolv(tmp_path, "stub", "nameserver 127.0.0.53\nsearch lan\n")
    upstream = write_host_resolv(tmp_path, "upstream", "nameserver 192.168.1.1\n")
    assert files.resolv_text("bridge", (stub, upstream)) == "nameserver 192.168.1.1\n"


def test_bridge_with_only_loopback_nameservers_gets_none(tmp_path):
    stub = write_host_resolv(tmp_path, "stub", "nameserver 127.0.0.53\nsearch lan\n")
    text = files.resolv_text("bridge", (stub, str(tmp_path / "missing")))
    assert "nameserver" not in text.replace("no nameserver", "")
    assert "search lan\n" in text


def test_etc_files_reject_an_unknown_mode(tmp_path):
    with pytest.raises(UsageError):
        files.render_etc_files("box", None, "weird")


def test_ifreq_packed_by_hand_as_struct_packs_it():
    import struct
    from minirun.network.loopback import _flags, _ifreq
    layout = struct.Struct("16sH22x")             # char ifr_name[16]; short ifr_flags; padding to 40
    for name, flags in ((b"lo", 0), (b"eth0", 0x1043), (b"x" * 15, 0xFFFF)):
        assert _ifreq(name, flags) == layout.pack(name, flags)
        assert _flags(layout.pack(name, flags)) == flags
