"""A small client for the OCI distribution API: read a tag's manifest and copy it to new tags.

Used to tell whether a release tag already holds this very image (the manifest's config
digest is the local image id), and to add extra tags without an engine push per tag.
Handles Basic auth and the Bearer token flow (WWW-Authenticate realm/service/scope).
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shipit.adapters.classify import classify_registry_message, parse_retry_after_header
from shipit.errors import AuthError, RegistryError

if TYPE_CHECKING:
    import requests

    from shipit.model import Auth

MANIFEST_TYPES = ", ".join(
    [
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.index.v1+json",
    ]
)
DOCKER_HUB_API = "registry-1.docker.io"


@dataclass(frozen=True)
class Manifest:
    """A manifest as the registry serves it."""

    digest: str
    media_type: str
    raw: bytes

    @property
    def config_digest(self) -> str | None:
        """The image config digest (= the engine's image id) of a single-image manifest."""
        try:
            body = json.loads(self.raw)
        except ValueError:
            return None
        config = body.get("config") if isinstance(body, dict) else None
        return config.get("digest") if isinstance(config, dict) else None


def _is_loopback(host: str) -> bool:
    name = (
        host.rsplit(":", 1)[0].strip("[]")
        if not host.startswith("[")
        else host[1 : host.index("]")]
    )
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


class RegistryClient:
    """One registry host. `auth` may be None for anonymous access."""

    def __init__(
        self,
        host: str,
        auth: Auth | None,
        *,
        timeout: float = 30.0,
        certs_dir: Path = Path("/etc/docker/certs.d"),
    ):
        import requests

        self.host = DOCKER_HUB_API if host in {"docker.io", "index.docker.io"} else host
        self.auth = auth
        self.timeout = timeout
        self.session: requests.Session = requests.Session()
        self.session.trust_env = False  # never route registry traffic through a proxy
        ca = certs_dir / self.host / "ca.crt"
        self.verify: bool | str = str(ca) if ca.is_file() else True
        self.scheme = "https"
        self._token: dict[str, str] = {}

    # ------------------------------------------------------------ public

    def manifest(self, repository: str, reference: str) -> Manifest | None:
        """The manifest for repository:reference, or None when the registry has none."""
        response = self._request("GET", repository, f"manifests/{reference}", pull_only=True)
        if response.status_code == 404:
            return None
        self._raise_for(response, f"{repository}:{reference}")
        digest = response.headers.get("Docker-Content-Digest") or ""
        if not digest.startswith("sha256:"):
            import hashlib

            digest = "sha256:" + hashlib.sha256(response.content).hexdigest()
        media_type = response.headers.get("Content-Type", "").split(";")[0]
        if media_type not in MANIFEST_TYPES:
            raise RegistryError(
                f"the registry answered {repository}:{reference} with something that is not a "
                f"manifest ({media_type or 'no content type'})",
                kind="garbage",
            )
        return Manifest(digest=digest, media_type=media_type, raw=response.content)

    def put_manifest(self, repository: str, tag: str, manifest: Manifest) -> str:
        """Store `manifest` under a new tag; return the digest the registry reports."""
        response = self._request(
            "PUT",
            repository,
            f"manifests/{tag}",
            data=manifest.raw,
            headers={"Content-Type": manifest.media_type},
        )
        self._raise_for(response, f"{repository}:{tag}")
        return response.headers.get("Docker-Content-Digest") or manifest.digest

    # ------------------------------------------------------------ plumbing

    def _url(self, repository: str, path: str) -> str:
        return f"{self.scheme}://{self.host}/v2/{repository}/{path}"

    def _request(
        self,
        method: str,
        repository: str,
        path: str,
        *,
        pull_only: bool = False,
        data: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> requests.Response:
        import requests

        scope = f"repository:{repository}:{'pull' if pull_only else 'pull,push'}"
        all_headers = {"Accept": MANIFEST_TYPES, **(headers or {})}
        # Up to three rounds: a TLS probe that falls back to plain HTTP on loopback, a Bearer
        # challenge answered with a token, and the request itself.
        for _attempt in range(3):
            if scope in self._token:
                all_headers["Authorization"] = f"Bearer {self._token[scope]}"
            elif self.auth is not None:
                all_headers.pop("Authorization", None)
            try:
                response = self.session.request(
                    method,
                    self._url(repository, path),
                    data=data,
                    headers=all_headers,
                    auth=(self.auth.username, self.auth.password)
                    if self.auth is not None and scope not in self._token
                    else None,
                    timeout=self.timeout,
                    verify=self.verify,
                )
            except requests.exceptions.SSLError as exc:
                if self.scheme == "https" and _is_loopback(self.host):
                    self.scheme = "http"  # the engine also allows plain HTTP on loopback
                    continue
                raise RegistryError(f"TLS error talking to {self.host}", kind="tls") from exc
            except requests.exceptions.ConnectionError as exc:
                if self.scheme == "https" and _is_loopback(self.host) and "SSL" in str(exc):
                    self.scheme = "http"
                    continue
                raise classify_registry_message(
                    f"cannot talk to {self.host}: {_transport_reason(exc)}", registry=self.host
                ) from exc
            except requests.exceptions.Timeout as exc:
                raise RegistryError(
                    f"{self.host} did not answer within {self.timeout:.0f}s",
                    transient=True,
                    kind="timeout",
                ) from exc
            if response.status_code == 400 and self.scheme == "https" and _is_loopback(self.host):
                self.scheme = "http"  # spoke TLS to a plain-HTTP registry
                continue
            challenge = response.headers.get("WWW-Authenticate", "")
            if (
                response.status_code == 401
                and challenge.lower().startswith("bearer")
                and scope not in self._token
            ):
                self._token[scope] = self._fetch_token(challenge, scope)
                continue
            return response
        return response

    def _fetch_token(self, challenge: str, scope: str) -> str:
        import requests

        params = dict(re.findall(r'(\w+)="([^"]*)"', challenge))
        realm = params.pop("realm", "")
        if not realm.startswith(("https://", "http://")):
            raise RegistryError(f"{self.host} sent an unusable auth challenge", kind="garbage")
        params["scope"] = scope
        auth = (self.auth.username, self.auth.password) if self.auth else None
        try:
            response = self.session.get(
                realm, params=params, auth=auth, timeout=self.timeout, verify=self.verify
            )
        except requests.exceptions.RequestException as exc:
            raise RegistryError(
                f"could not reach the token service of {self.host}",
                transient=True,
                kind="unreachable",
            ) from exc
        if response.status_code in (401, 403):
            raise AuthError(f"{self.host} refused the credentials")
        self._raise_for(response, "token")
        try:
            body = response.json()
        except ValueError as exc:
            raise RegistryError(
                f"{self.host} token service answered with garbage", kind="garbage"
            ) from exc
        token = (body.get("token") or body.get("access_token")) if isinstance(body, dict) else None
        if not token:
            raise RegistryError(f"{self.host} token service returned no token", kind="garbage")
        return str(token)

    def _raise_for(self, response: requests.Response, what: str) -> None:
        if response.status_code < 400:
            return
        retry_after = parse_retry_after_header(response.headers.get("Retry-After"))
        message = _error_text(response)
        error = classify_registry_message(
            f"{response.status_code} {message}", status=response.status_code, registry=self.host
        )
        if isinstance(error, RegistryError) and retry_after is not None:
            error.retry_after = retry_after
        if isinstance(error, AuthError | RegistryError):
            error.message = f"{error.message} [{what}]"
        raise error


# What went wrong on the wire, in the words the classifier knows, without the URL or the long
# urllib3 repr (short, and never anything a request carried).
_TRANSPORT_REASONS = (
    ("timed out", "connection timed out"),
    ("refused", "connection refused"),
    ("reset by peer", "connection reset"),
    ("remote end closed", "connection closed without an answer"),
    ("badstatusline", "malformed HTTP response"),
    ("bad status line", "malformed HTTP response"),
    ("name or service not known", "no such host"),
    ("failed to resolve", "no such host"),
    ("nodename nor servname", "no such host"),
    ("temporary failure in name resolution", "temporary failure in name resolution"),
    ("aborted", "connection aborted"),
)


def _transport_reason(exc: BaseException) -> str:
    text = str(exc).lower()
    for needle, reason in _TRANSPORT_REASONS:
        if needle in text:
            return reason
    return "connection failed"


def _error_text(response: Any) -> str:
    """The OCI error body's "CODE: message" pairs, else the HTTP reason (never the raw body)."""
    try:
        body = response.json()
    except ValueError:
        body = None
    errors = body.get("errors") if isinstance(body, dict) else None
    if isinstance(errors, list):
        text = "; ".join(
            f"{e.get('code', '')}: {e.get('message', '')}" for e in errors if isinstance(e, dict)
        )
        if text:
            return text
    return str(response.reason or "error")
