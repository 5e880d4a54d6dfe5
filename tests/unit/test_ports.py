"""network/ports.py without root: -p specs as docker reads them, one line for each
bad one, and the shapes ps and inspect show. (The sockets and the proxy are
tested on the real kernel in tests/integration/test_ports.py.)"""

from __future__ import annotations

import sys

import pytest

from minirun.errors import UsageError
from minirun.network import ports
from minirun.network.ports import Binding


@pytest.mark.parametrize("spec, expected", [
    ("80", [Binding("", 0, 80)]),
    ("80/tcp", [Binding("", 0, 80)]),
    ("80/TCP", [Binding("", 0, 80)]),
    ("8080:80", [Binding("", 8080, 80)]),
    ("127.0.0.1:8080:80", [Binding("127.0.0.1", 8080, 80)]),
    ("127.0.0.1:8080:80/tcp", [Binding("127.0.0.1", 8080, 80)]),
    ("127.0.0.1::80", [Binding("127.0.0.1", 0, 80)]),
    ("::80", [Binding("", 0, 80)]),
    ("8080-8081:80-81", [Binding("", 8080, 80), Binding("", 8081, 81)]),
    ("80-81", [Binding("", 0, 80), Binding("", 0, 81)]),
    ("65535:1", [Binding("", 65535, 1)]),
])
def test_docker_forms_parse(spec, expected):
    assert ports.parse(spec) == expected


@pytest.mark.parametrize("spec, words", [
    ("0", "container port '0' is not a port from 1 to 65535"),
    ("70000", "container port '70000' is not a port"),
    ("0:80", "host port '0' is not a port"),
    ("70000:80", "host port '70000' is not a port"),
    ("http", "container port 'http' is not a port"),
    ("８０", "is not a port"),                     # digits, but not ASCII ones
    ("", "no container port"),
    ("8080:", "no container port"),
    ("1.2.3:80:80", "'1.2.3' is not an IPv4 address"),
    ("127.0.0.1:80", "'127.0.0.1' stands where the host port goes"),
    ("80/sctp", "TCP ports only"),
    ("80/icmp", "the protocol is 'icmp', not tcp"),
    ("[::1]:80:80", "an IPv6 host address is not supported"),
    ("8080-8082:80-81", "the host range has 3 port(s) and the container range 2"),
    ("8080:80-81", "the host range has 1 port(s) and the container range 2"),
    ("81-80", "ends before it starts"),
])
def test_bad_specs_are_one_usage_error_naming_the_fix(spec, words):
    with pytest.raises(UsageError) as info:
        ports.parse(spec)
    line = info.value.line()
    assert words in line and "\n" not in line
    assert info.value.hint


def test_udp_is_refused_naming_the_limitation():
    with pytest.raises(UsageError) as info:
        ports.parse_all(["8080:80", "53:53/udp"])
    assert "TCP ports only" in info.value.message and "UDP" in info.value.message


def test_parse_all_keeps_the_order_of_the_flags():
    assert ports.parse_all(["1:2", "127.0.0.1::3"]) == (Binding("", 1, 2), Binding("127.0.0.1", 0, 3))


def test_shown_is_dockers_and_reads_back():
    bound = Binding("0.0.0.0", 8080, 80)
    assert bound.shown() == "0.0.0.0:8080->80/tcp"
    assert Binding("", 8080, 80).shown() == "0.0.0.0:8080->80/tcp"
    assert ports.parse_shown(bound.shown()) == bound
    assert ports.parse_shown("garbage") is None


def test_docker_maps_for_inspect():
    asked = ports.parse_all(["127.0.0.1::80", "8080:80", "81"])
    assert ports.docker_map(asked, requested=True) == {
        "80/tcp": [{"HostIp": "127.0.0.1", "HostPort": ""}, {"HostIp": "", "HostPort": "8080"}],
        "81/tcp": [{"HostIp": "", "HostPort": ""}]}
    bound = (Binding("127.0.0.1", 41000, 80), Binding("0.0.0.0", 8080, 80))
    assert ports.docker_map(bound) == {
        "80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "41000"}, {"HostIp": "0.0.0.0", "HostPort": "8080"}]}


def test_the_run_path_never_imports_the_proxy_machinery():
    """-p loads ports.py; nothing on run's light path imports it, nor threading."""
    import subprocess
    code = ("import sys; import minirun.cli.runflags, minirun.run.start, minirun.run.plan; "
            "print(sorted(m for m in sys.modules if m in ('minirun.network.ports', 'threading', "
            "'selectors', 'asyncio', 'socket')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
