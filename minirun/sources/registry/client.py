"""The distribution API calls minirun makes, with authentication folded in:
each call names the scope it needs, a 401 is answered once, and a second 401
is a clear "credentials rejected" error."""

from __future__ import annotations

import json
import urllib.parse

from ... import oci
from ...errors import AuthError, DigestMismatch, NotFound, RegistryError, printable
from .auth import Authenticator
from .http import Http, Response, join_url, scheme_for

DOCKER_HUB_API = "registry-1.docker.io"
MANIFEST_ACCEPT = ", ".join((oci.OCI_INDEX, oci.OCI_MANIFEST, oci.DOCKER_LIST, oci.DOCKER_MANIFEST,
                             oci.DOCKER_SCHEMA1_SIGNED, oci.DOCKER_SCHEMA1))


def api_host(registry: str) -> str:
    return DOCKER_HUB_API if registry == "docker.io" else registry


def pull_scope(repo: str) -> str:
    return f"repository:{repo}:pull"


def push_scope(repo: str) -> str:
    return f"repository:{repo}:pull,push"


def _manifest_body(response: Response, what: str) -> bytes:
    """A manifest or index, refused unread when the registry announces more than
    oci.MAX_MANIFEST_BYTES, and after that many bytes when it announces nothing."""
    limit = oci.MAX_MANIFEST_BYTES
    announced = response.header("content-length").strip()
    if announced.isdigit() and int(announced) > limit:
        response.close()
        raise oci.too_large(what, int(announced), limit)
    data = response.read(limit + 1)
    if len(data) > limit:
        response.close()
        raise oci.too_large(what, None, limit)
    return data


class RegistryClient:
    def __init__(self, registry: str, http: Http | None = None, creds: tuple[str, str] | None = None):
        self.registry = registry
        self.host = api_host(registry)
        self.base = f"{scheme_for(self.host)}://{self.host}"
        self.http = http or Http()
        self.auth = Authenticator(self.http, registry, creds)
        self.requests = 0     # how many HTTP requests went to the registry (for tests and -v)

    # ------------------------------------------------------------ plumbing
    def request(self, method: str, path: str, scope: str, headers: dict | None = None,
                body=None) -> Response:
        url = path if path.startswith(("http://", "https://")) else self.base + path
        headers = dict(headers or {})
        cached = self.auth.cached(scope)
        if cached:
            headers["Authorization"] = cached
        response = self._send(method, url, headers, body)
        if response.status == 401:
            challenge = response.header("www-authenticate")
            response.discard()
            asking = urllib.parse.urlsplit(response.url).netloc
            if asking != self.host:                   # the netloc of self.base
                # a redirect target (a CDN, an upload host) would get the registry's
                # credentials through the realm it names: never answered
                raise RegistryError(f"{printable(asking)[:100]}, where {self.registry} sent minirun, asks it to "
                                    f"authenticate; minirun gives {self.registry}'s credentials to {self.registry} "
                                    f"only", "a registry's redirect targets must serve without its credentials")
            if not challenge:
                raise AuthError(f"{self.registry} answered 401 without saying how to authenticate")
            if cached:
                # the cached answer expired or was wrong: start from the challenge again
                pass
            headers["Authorization"] = self.auth.answer(challenge, scope)
            if hasattr(body, "seek"):
                body.seek(0)
            response = self._send(method, url, headers, body)
            if response.status == 401:
                response.discard()
                raise AuthError(f"authentication to {self.registry} failed: credentials rejected")
        return response

    def _send(self, method, url, headers, body) -> Response:
        self.requests += 1
        return self.http.request(method, url, headers, body,
                                 auth_for=self.host)

    def fail(self, response: Response, what: str) -> RegistryError:
        """A registry error response as one line, using the API's error codes when given."""
        detail = ""
        try:
            errors = json.loads(response.body(1 << 20) or b"{}").get("errors") or []
            if errors and isinstance(errors[0], dict):
                detail = f": {errors[0].get('code', '')} {errors[0].get('message', '')}".rstrip()
        except (ValueError, AttributeError, RecursionError, RegistryError):
            pass
        if response.status == 404:
            return NotFound(f"{what}: not found on {self.registry}{detail}",
                            "check the repository name and tag")
        if response.status == 403:
            return AuthError(f"{what}: access denied by {self.registry}{detail}")
        return RegistryError(f"{what}: {self.registry} answered HTTP {response.status}{detail}")

    # ------------------------------------------------------------ API
    def ping(self) -> None:
        """GET /v2/, authenticating if asked: what `login` uses to check credentials."""
        response = self.request("GET", "/v2/", "")
        response.discard()
        if response.status != 200:
            raise self.fail(response, "registry check")

    def get_manifest(self, repo: str, reference: str) -> tuple[bytes, str, str]:
        """(bytes, media type, digest) of a manifest or index, the digest verified."""
        what = f"manifest {repo}:{reference}" if not reference.startswith("sha256:") else f"manifest {repo}@{reference}"
        response = self.request("GET", f"/v2/{repo}/manifests/{reference}", pull_scope(repo),
                                {"Accept": MANIFEST_ACCEPT})
        if response.status != 200:
            raise self.fail(response, what)
        data = _manifest_body(response, what)
        digest = oci.sha256_digest(data)
        expected = reference if reference.startswith("sha256:") else response.header("docker-content-digest")
        if expected and expected != digest:
            raise DigestMismatch(f"{what}: content has digest {digest}, but the registry said {expected}")
        media_type = response.header("content-type").split(";")[0].strip()
        if media_type not in (*oci.INDEX_TYPES, *oci.MANIFEST_TYPES):
            media_type = oci.media_type_of(data, what)
        return data, media_type, digest

    def blob_exists(self, repo: str, digest: str, scope: str | None = None) -> bool:
        response = self.request("HEAD", f"/v2/{repo}/blobs/{digest}", scope or pull_scope(repo))
        if response.status == 200:
            return True
        if response.status == 404:
            return False
        raise self.fail(response, f"blob {oci.short_id(digest)}")

    def get_blob(self, repo: str, digest: str, offset: int = 0) -> Response:
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        response = self.request("GET", f"/v2/{repo}/blobs/{digest}", pull_scope(repo), headers)
        if response.status not in (200, 206):
            raise self.fail(response, f"blob {oci.short_id(digest)}")
        return response

    def mount_blob(self, repo: str, digest: str, source_repo: str) -> bool:
        """Ask the registry to link a blob from another repository; False means upload it."""
        query = urllib.parse.urlencode({"mount": digest, "from": source_repo})
        scope = f"{push_scope(repo)} repository:{source_repo}:pull"
        response = self.request("POST", f"/v2/{repo}/blobs/uploads/?{query}", scope,
                                {"Content-Length": "0"}, b"")
        response.discard()
        if response.status == 201:
            return True
        if response.status == 202:
            self._cancel(response, repo)
            return False
        raise self.fail(response, f"mount blob {oci.short_id(digest)}")

    def upload_blob(self, repo: str, digest: str, size: int, stream) -> None:
        """POST to start an upload, then one PUT with the whole blob (monolithic upload)."""
        response = self.request("POST", f"/v2/{repo}/blobs/uploads/", push_scope(repo),
                                {"Content-Length": "0"}, b"")
        response.discard()
        if response.status != 202 or not response.header("location"):
            raise self.fail(response, f"start upload of {oci.short_id(digest)}")
        location = join_url(self.base + "/", response.header("location"))
        location += ("&" if "?" in location else "?") + urllib.parse.urlencode({"digest": digest})
        response = self.request("PUT", location, push_scope(repo),
                                {"Content-Type": "application/octet-stream", "Content-Length": str(size)},
                                stream)
        response.discard()
        if response.status != 201:
            raise self.fail(response, f"upload blob {oci.short_id(digest)}")

    def _cancel(self, response: Response, repo: str) -> None:
        location = response.header("location")
        if location:
            try:
                self.request("DELETE", join_url(self.base + "/", location), push_scope(repo)).discard()
            except RegistryError:
                pass

    def put_manifest(self, repo: str, reference: str, data: bytes, media_type: str) -> str:
        response = self.request("PUT", f"/v2/{repo}/manifests/{reference}", push_scope(repo),
                                {"Content-Type": media_type, "Content-Length": str(len(data))}, data)
        response.discard()
        if response.status not in (200, 201):
            raise self.fail(response, f"put manifest {repo}:{reference}")
        digest = oci.sha256_digest(data)
        said = response.header("docker-content-digest")
        if said and said != digest:
            raise DigestMismatch(f"manifest {repo}:{reference}: registry stored {said}, expected {digest}")
        return digest
