"""The registry client's transport policy (sources/registry/http.py), on answers
made here: what a redirect may lead to, and the timeout setting."""

from __future__ import annotations

import pytest

from minirun.errors import RegistryError, UsageError
from minirun.sources.registry import http
from minirun.sources.registry.http import Http, Response


class Scripted(Http):
    """An Http whose answers are a script: {url: (status, location)}; records what it fetched."""

    def __init__(self, script: dict[str, tuple[int, str]]):
        super().__init__(timeout=5)
        self.script, self.fetched = script, []

    def _send(self, method, parts, headers, body) -> Response:
        url = parts.geturl()
        self.fetched.append(url)
        status, location = self.script[url]
        return Response(status, {"location": location} if location else {}, url, None, b"")


@pytest.mark.parametrize("start,target", [
    ("https://registry.example.com/v2/x/manifests/latest", "http://cdn.example.com/blob"),
    ("https://registry.example.com/v2/x/manifests/latest", "http://10.0.0.5:9000/blob"),
    ("https://registry.example.com/v2/x/manifests/latest", "HTTP://cdn.example.com/blob"),
    ("https://registry.example.com/v2/x/manifests/latest", "http://registry.example.com/v2/x"),
    ("http://registry.lan/v2/x/manifests/latest", "http://cdn.example.com/blob"),   # listed != its target
])
def test_a_redirect_to_plain_http_is_refused_unless_allowed_for_the_target(monkeypatch, start, target):
    """A registry that redirects to plain HTTP hands the next answer (a tag's
    manifest is not checked against a digest the caller knows) and any token to
    anyone on the path: refused, unless the target is one plain HTTP is allowed for."""
    monkeypatch.setenv("MINIRUN_INSECURE_REGISTRIES", "registry.lan")
    client = Scripted({start: (302, target)})
    with pytest.raises(RegistryError, match="plain HTTP") as caught:
        client.request("GET", start)
    assert client.fetched == [start]
    assert "MINIRUN_INSECURE_REGISTRIES=" in caught.value.hint


def test_a_first_request_over_plain_http_is_refused_too(monkeypatch):
    """A token realm or an upload location is the first URL of its request: the
    same rule (an outside review had Basic credentials sent to an http:// realm)."""
    monkeypatch.delenv("MINIRUN_INSECURE_REGISTRIES", raising=False)
    client = Scripted({})
    with pytest.raises(RegistryError, match="plain HTTP"):
        client.request("GET", "http://127.0.0.3:5115/token?service=x", {"Authorization": "Basic eDp5"})
    assert client.fetched == []


@pytest.mark.parametrize("start,target,insecure", [
    ("https://registry.example.com/v2/", "https://cdn.example.com/blob", ""),       # https -> https
    ("http://127.0.0.1:5000/v2/", "http://127.0.0.1:9000/blob", ""),                # loopback
    ("https://registry.example.com/v2/", "http://LOCALHOST:9000/blob", ""),         # loopback, any case
    ("https://registry.example.com/v2/", "http://[::1]:9000/blob", ""),
    ("https://registry.example.com/v2/", "http://cdn.lan/blob", "cdn.lan"),         # listed insecure
    ("http://registry.lan:5000/v2/", "http://cdn.lan:9000/blob", "registry.lan:5000,cdn.lan:9000"),
])
def test_other_redirects_are_followed(monkeypatch, start, target, insecure):
    monkeypatch.setenv("MINIRUN_INSECURE_REGISTRIES", insecure)
    client = Scripted({start: (307, target), target: (200, "")})
    assert client.request("GET", start).status == 200
    assert client.fetched == [start, target]


@pytest.mark.parametrize("value,expected", [("", http.TIMEOUT), ("2", 2.0), (" 0.5 ", 0.5)])
def test_the_registry_timeout_setting(monkeypatch, value, expected):
    monkeypatch.setenv("MINIRUN_REGISTRY_TIMEOUT", value)
    assert Http().timeout == expected


@pytest.mark.parametrize("value", ["0", "-1", "abc", "nan", "inf", "1e9"])
def test_a_bad_registry_timeout_is_a_usage_error(monkeypatch, value):
    monkeypatch.setenv("MINIRUN_REGISTRY_TIMEOUT", value)
    with pytest.raises(UsageError, match="MINIRUN_REGISTRY_TIMEOUT"):
        Http()
