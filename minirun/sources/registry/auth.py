"""Authentication, as Docker does it.

A registry answers 401 with `WWW-Authenticate: Bearer realm=...,service=...,scope=...`
(ask the realm for a token, anonymously or with basic credentials, then retry
with `Authorization: Bearer TOKEN`) or `Basic realm=...` (retry with basic
credentials). Credentials live in Docker's own file, `$DOCKER_CONFIG/config.json`
or `~/.docker/config.json`, under `auths[registry].auth` = base64(user:password),
so `docker login` and `minirun login` share them.
"""

from __future__ import annotations

import base64
import json
import os
import re
import threading
import urllib.parse

from ...errors import AuthError, RegistryError
from .http import split_url

DOCKER_HUB_KEY = "https://index.docker.io/v1/"
# A parameter starts where a word does: without the look-behind, finditer tried \w+=
# from every position of a long word, quadratic (an outside review spent minutes of
# CPU on one 64 KiB header).
_PARAM_RE = re.compile(r'(?<!\w)(\w+)=(?:"((?:[^"\\]|\\.)*)"|([^,\s]*))')
MAX_CHALLENGE = 16 << 10            # a WWW-Authenticate header is a realm, a service and a scope
MAX_TOKEN = 64 << 10                # a JWT with many scopes is a few KiB


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """'Bearer realm="x",service="y"' -> ('bearer', {'realm': 'x', 'service': 'y'})."""
    if len(header) > MAX_CHALLENGE:
        raise RegistryError(f"the registry's WWW-Authenticate header is over {MAX_CHALLENGE >> 10} KiB")
    scheme, _, rest = header.strip().partition(" ")
    params = {m.group(1).lower(): (m.group(2) if m.group(2) is not None else m.group(3))
              for m in _PARAM_RE.finditer(rest)}
    return scheme.lower(), params


# ---------------------------------------------------------------- credentials

def config_path() -> str:
    base = os.environ.get("DOCKER_CONFIG") or os.path.join(os.path.expanduser("~"), ".docker")
    return os.path.join(base, "config.json")


def _key(registry: str) -> str:
    return DOCKER_HUB_KEY if registry in ("docker.io", "registry-1.docker.io", "index.docker.io") else registry


def _read_config() -> dict:
    try:
        with open(config_path()) as f:
            doc = json.load(f)
    except FileNotFoundError:
        return {}
    except ValueError as exc:
        raise AuthError(f"{config_path()} is not valid JSON: {exc}", "fix or remove the file") from None
    return doc if isinstance(doc, dict) else {}


def credentials(registry: str) -> tuple[str, str] | None:
    entry = (_read_config().get("auths") or {}).get(_key(registry)) or {}
    if not isinstance(entry, dict):
        return None
    encoded = entry.get("auth")
    if isinstance(encoded, str) and encoded:
        try:
            user, _, password = base64.b64decode(encoded).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            raise AuthError(f"{config_path()}: the auth entry for {registry} is not base64 user:password") from None
        return user, password
    if isinstance(entry.get("username"), str) and isinstance(entry.get("password"), str):
        return entry["username"], entry["password"]
    return None


def save_credentials(registry: str, user: str, password: str) -> str:
    doc = _read_config()
    doc.setdefault("auths", {})[_key(registry)] = {
        "auth": base64.b64encode(f"{user}:{password}".encode()).decode()}
    _write_config(doc)
    return config_path()


def remove_credentials(registry: str) -> bool:
    doc = _read_config()
    removed = (doc.get("auths") or {}).pop(_key(registry), None) is not None
    if removed:
        _write_config(doc)
    return removed


def _write_config(doc: dict) -> None:
    path = config_path()
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    tmp = f"{path}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(doc, f, indent=2)
    os.rename(tmp, path)


# ---------------------------------------------------------------- the handshake

class Authenticator:
    """Turns 401 challenges into Authorization headers, caching tokens per scope."""

    def __init__(self, http, registry: str, creds: tuple[str, str] | None = None):
        self.http = http
        self.registry = registry
        self.creds = creds if creds is not None else credentials(registry)
        self._tokens: dict[str, str] = {}
        self._lock = threading.Lock()

    def cached(self, scope: str) -> str | None:
        return self._tokens.get(scope)

    def answer(self, challenge_header: str, scope: str) -> str:
        """The Authorization header that answers this challenge for scope."""
        scheme, params = parse_challenge(challenge_header)
        if scheme == "basic":
            if not self.creds:
                raise AuthError(f"{self.registry} requires a login")
            header = "Basic " + base64.b64encode(":".join(self.creds).encode()).decode()
        elif scheme == "bearer":
            header = "Bearer " + self._token(params, scope)
        else:
            raise RegistryError(f"{self.registry} asks for unsupported authentication {scheme!r}")
        with self._lock:
            self._tokens[scope] = header
        return header

    def _token(self, params: dict[str, str], scope: str) -> str:
        realm = params.get("realm")
        if not realm:
            raise RegistryError(f"{self.registry} sent a Bearer challenge without a realm")
        query = {"service": params.get("service", "")}
        scopes = [s for s in {params.get("scope", ""), scope} if s]
        url = realm + ("&" if "?" in realm else "?") + urllib.parse.urlencode(
            [("service", query["service"])] + [("scope", s) for s in scopes])
        headers = {}
        if self.creds:
            headers["Authorization"] = "Basic " + base64.b64encode(":".join(self.creds).encode()).decode()
        realm_host = split_url(realm).netloc          # refused: not http(s), or plain HTTP not allowed
        response = self.http.request("GET", url, headers, auth_for=realm_host)
        body = response.body(1 << 20)
        if response.status in (401, 403):
            raise AuthError(f"the token service of {self.registry} refused the credentials "
                            f"(HTTP {response.status})")
        if response.status != 200:
            raise RegistryError(f"the token service of {self.registry} answered HTTP {response.status}")
        try:
            doc = json.loads(body)
            token = doc.get("token") or doc.get("access_token")
        except (ValueError, AttributeError, RecursionError):
            token = None
        if not isinstance(token, str) or not token:
            raise RegistryError(f"the token service of {self.registry} returned no token")
        if len(token) > MAX_TOKEN or not (token.isascii() and token.isprintable()) or " " in token:
            raise RegistryError(f"the token service of {self.registry} returned a token that is not one "
                                f"(over {MAX_TOKEN >> 10} KiB, or with spaces, control or non-ASCII characters)")
        return token
