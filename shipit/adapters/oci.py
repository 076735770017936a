"""A small client for the OCI distribution API: read a tag's manifest and copy it to new tags.

Used to tell whether a release tag already holds this very image (the manifest's config
digest is the local image id), and to add extra tags without an engine push per tag.
Handles Basic auth and the Bearer token flow (WWW-Authenticate realm/service/scope).
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from shipit.adapters.classify import classify_registry_message, parse_retry_after_header
from shipit.adapters.registry_trust import (
    CERTS_DIR,
    EngineRegistryConfig,
    HostCerts,
    client_cert,
    is_loopback,
    proxy_for,
    ssl_context,
)
from shipit.errors import AuthError, RegistryError, ShipitError
from shipit.settings import environment

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


class RegistryClient:
    """One registry host. `auth` may be None for anonymous access.

    The registry is trusted as the engine trusts it (shipit.adapters.registry_trust): the CAs
    of the system or of REQUESTS_CA_BUNDLE/SSL_CERT_FILE plus /etc/docker/certs.d/HOST/, the
    proxies of the environment, and the engine's insecure registries (`engine_config` returns
    `docker info`'s RegistryConfig; asked only when TLS fails; without an answer only
    loopback is insecure, as in the engine's defaults).
    """

    def __init__(
        self,
        host: str,
        auth: Auth | None,
        *,
        timeout: float = 30.0,
        certs_dir: Path = CERTS_DIR,
        env: Mapping[str, str] | None = None,
        engine_config: Callable[[], Mapping[str, Any]] | None = None,
    ):
        self.host = DOCKER_HUB_API if host in {"docker.io", "index.docker.io"} else host
        self.auth = auth
        self.timeout = timeout
        self.env: Mapping[str, str] = environment() if env is None else env
        self._engine_config = engine_config or partial(_engine_registry_config, self.env)
        self._engine_config_is_asked = engine_config is None
        self._certs = HostCerts.read(certs_dir / self.host)
        self.session: requests.Session = _verifying_session(ssl_context(self.env, self._certs))
        self.verify = True
        self.scheme = "https"
        self._insecure: bool | None = None
        self._token: dict[str, str] = {}

    # ------------------------------------------------------------ public

    def ping(self) -> None:
        """GET /v2/ once, its answer ignored: settles whether this registry is reached over
        HTTPS or, when the engine would, its insecure fallback, before the requests that count."""
        self._send("GET", "/v2/", auth=None)

    def check_login(self) -> None:
        """Check the credentials as `docker login` does: GET /v2/, answering its challenge.

        Returns when the registry accepts them (or needs none); raises AuthError when it
        refuses them, RegistryError for anything else (transient ones marked so).
        """
        response = self._send("GET", "/v2/", auth=None)
        challenge = response.headers.get("WWW-Authenticate", "")
        if response.status_code != 401:
            self._raise_for(response, "/v2/")
            return
        if self.auth is None:
            raise AuthError(f"{self.host} asks for credentials and none were given")
        if challenge.lower().startswith("bearer"):
            self._fetch_token(challenge, None)
            return
        response = self._send("GET", "/v2/", auth=(self.auth.username, self.auth.password))
        if response.status_code in (401, 403):
            raise AuthError(f"{self.host} refused the credentials")
        self._raise_for(response, "/v2/")

    def check_push_access(self, repository: str) -> None:
        """Check that these credentials may push to `repository`, as a push begins: start a
        blob upload, then cancel it.

        Returns when the registry accepts (202); raises AuthError when it refuses them (401 or
        403, a token service refusing them, or a token without push access), RegistryError
        for anything else (transient ones marked so).
        """
        response = self._request("POST", repository, "blobs/uploads/")
        if response.status_code in (401, 403):
            raise AuthError(
                f"{self.host} refused these credentials for pushing to {repository}: "
                f"{_error_text(response)}"
            )
        self._raise_for(response, f"{repository} upload")
        upload = urlsplit(response.headers.get("Location", ""))
        prefix = f"/v2/{repository}/"
        if upload.path.startswith(prefix):
            rest = upload.path[len(prefix) :] + (f"?{upload.query}" if upload.query else "")
            with contextlib.suppress(ShipitError):  # an unfinished upload expires anyway
                self._request("DELETE", repository, rest)

    def blob(self, repository: str, digest: str) -> bytes:
        """A blob's bytes (a config blob, say); a missing blob is an error."""
        response = self._request("GET", repository, f"blobs/{digest}", pull_only=True)
        self._raise_for(response, f"{repository}@{digest}")
        return bytes(response.content)

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
        scope = f"repository:{repository}:{'pull' if pull_only else 'pull,push'}"
        all_headers = {"Accept": MANIFEST_TYPES, **(headers or {})}
        # Two rounds: a Bearer challenge answered with a token, then the request itself.
        for _attempt in range(2):
            auth: tuple[str, str] | None = None
            if scope in self._token:
                all_headers["Authorization"] = f"Bearer {self._token[scope]}"
            else:
                all_headers.pop("Authorization", None)
                if self.auth is not None:
                    auth = (self.auth.username, self.auth.password)
            response = self._send(
                method, f"/v2/{repository}/{path}", data=data, headers=all_headers, auth=auth
            )
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

    def _send(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        """One request to this registry, over HTTPS unless the engine would fall back to HTTP.

        An insecure registry (loopback, or one the engine lists) is tried over HTTPS without
        verification after a TLS failure, then over plain HTTP, as the engine does.
        """
        import requests

        while True:
            url = f"{self.scheme}://{self.host}{path}"
            try:
                response = self._http(method, url, **kwargs)
            except requests.exceptions.SSLError as exc:
                if self._fall_back():
                    continue
                raise RegistryError(
                    f"TLS error talking to {self.host}: {_tls_reason(exc)}",
                    hint=f"trust its CA (/etc/docker/certs.d/{self.host}/ca.crt, or "
                    "REQUESTS_CA_BUNDLE), or list it in the engine's insecure-registries",
                    kind="tls",
                ) from exc
            except requests.exceptions.ConnectionError as exc:
                if "SSL" in str(exc) and self._fall_back():
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
            return response

    def _http(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        proxy = proxy_for(url, self.env)
        return self.session.request(
            method,
            url,
            timeout=self.timeout,
            verify=self.verify,
            proxies={"http": proxy, "https": proxy} if proxy else {},
            cert=client_cert(self._certs) if not self.verify else None,
            **kwargs,
        )

    def _fall_back(self) -> bool:
        """Move to the next way the engine would try an insecure registry; False if none."""
        if self.scheme != "https" or not self._is_insecure():
            return False
        if self.verify:
            import warnings

            import requests
            from urllib3.exceptions import InsecureRequestWarning

            # The engine's own choice for this registry: no warning per request about it.
            warnings.filterwarnings("ignore", category=InsecureRequestWarning)
            self.session = requests.Session()  # an unverified session, still without env
            self.session.trust_env = False
            self.verify = False
        else:
            self.scheme = "http"
        return True

    def _is_insecure(self) -> bool:
        if self._insecure is None and self._engine_config_is_asked and is_loopback(self.host):
            # The engine always lists 127.0.0.0/8 as insecure (moby's registry defaults):
            # no engine connection and `docker info` needed to know that.
            self._insecure = True
        if self._insecure is None:
            answer = self._engine_config()
            if answer:
                self._insecure = EngineRegistryConfig.from_info(answer).is_insecure(self.host)
            else:  # the engine's defaults: loopback only
                self._insecure = is_loopback(self.host)
        return self._insecure

    def _fetch_token(self, challenge: str, scope: str | None) -> str:
        import requests

        params = dict(re.findall(r'(\w+)="([^"]*)"', challenge))
        realm = params.pop("realm", "")
        if not realm.startswith(("https://", "http://")):
            raise RegistryError(f"{self.host} sent an unusable auth challenge", kind="garbage")
        if scope is not None:
            params["scope"] = scope
        auth = (self.auth.username, self.auth.password) if self.auth else None
        try:
            response = self._http("GET", realm, params=params, auth=auth)
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


def _tls_reason(exc: BaseException) -> str:
    """The TLS failure in a few words (never the URL)."""
    text = str(exc)
    for needle in ("CERTIFICATE_VERIFY_FAILED", "WRONG_VERSION_NUMBER", "certificate required"):
        if needle.lower() in text.lower():
            return {
                "CERTIFICATE_VERIFY_FAILED": "certificate verify failed",
                "WRONG_VERSION_NUMBER": "the server does not speak TLS",
                "certificate required": "the registry requires a client certificate",
            }[needle]
    return "handshake failed"


def _verifying_session(context: Any) -> requests.Session:
    """A session whose HTTPS (direct or through a proxy) verifies with `context`."""
    import requests
    import requests.adapters

    class TrustAdapter(requests.adapters.HTTPAdapter):
        def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
            kwargs["ssl_context"] = context
            super().init_poolmanager(*args, **kwargs)

        def proxy_manager_for(self, proxy: str, **kwargs: Any) -> Any:
            kwargs["ssl_context"] = context
            return super().proxy_manager_for(proxy, **kwargs)

    session = requests.Session()
    session.trust_env = False  # proxies and CAs come from registry_trust, not requests
    session.mount("https://", TrustAdapter())
    return session


def _engine_registry_config(env: Mapping[str, str]) -> Mapping[str, Any]:
    """`docker info` RegistryConfig of the engine DOCKER_HOST names; {} when unavailable."""
    from shipit.adapters.engine.client import Engine
    from shipit.errors import ShipitError

    try:
        return Engine.connect(env, timeout=15).registry_config()
    except ShipitError:
        return {}


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
