"""A Docker Hub stand-in on loopback: a real registry with token auth, and its token server.

``registry-1.docker.io`` is Debian's ``docker-registry`` (distribution 2.8) with TLS and
``auth: token``; ``auth.docker.io`` is :mod:`tests.support.tokenserver`. Both listen on port
443 of the loopback addresses ``.ci/dockerhub-setup`` maps those names to, with the certificate
it made (the engine trusts it through the system roots; shipit's registry client and skopeo
through ``/etc/docker/certs.d``). Usage::

    reason = dockerhub_environment_ready()
    if reason: pytest.skip(reason)
    with running_dockerhub(tmp_path, [Account("alice", "dckr_pat_...")]) as hub:
        ...  # shipit push --registry dockerhub (DOCKERHUB_USERNAME/DOCKERHUB_TOKEN)
        assert hub.skopeo_digest("alice/app", "1.0.0", hub.creds("alice")) == digest

Nothing here edits the machine; without the CI setup the tests skip (CI: fail).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from tests.support import die_with_parent
from tests.support.ports import port_is_free
from tests.support.registry import (
    MANIFEST_ACCEPT,
    REGISTRY_BINARY,
    Registry,
    RegistryError,
    skopeo_digest,
)
from tests.support.tokenserver import Account, TokenServer, running_token_server

REGISTRY_HOST = "registry-1.docker.io"
AUTH_HOST = "auth.docker.io"
SERVICE = "registry.docker.io"
ISSUER = "auth.docker.io"
DOCKERHUB_ENV_FILE = Path("/var/lib/shipit-ci/dockerhub.env")
#: Where .ci/dockerhub-setup puts the certificate for the engine (Go reads /etc/ssl/certs/*).
SYSTEM_TRUST_FILE = Path("/etc/ssl/certs/shipit-ci-dockerhub.pem")
START_TIMEOUT = 20.0


@dataclass(frozen=True)
class DockerHubSetup:
    """What ``.ci/dockerhub-setup`` prepared."""

    tls_dir: Path
    address: str  # registry-1.docker.io
    auth_address: str  # auth.docker.io

    @property
    def cert(self) -> Path:
        return self.tls_dir / "cert.pem"

    @property
    def key(self) -> Path:
        return self.tls_dir / "key.pem"


def _read_env_file(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    try:
        text = path.read_text()
    except OSError:
        return values
    for line in text.splitlines():
        for word in line.strip().removeprefix("export ").split():
            key, sep, value = word.partition("=")
            if sep:
                values[key] = value.strip("'\"")
    return values


def dockerhub_setup(
    env: Mapping[str, str] | None = None, env_file: Path = DOCKERHUB_ENV_FILE
) -> DockerHubSetup | None:
    """The setup from ``SHIPIT_DOCKERHUB_*`` (default: os.environ), else from the env file."""
    source: Mapping[str, str] = os.environ if env is None else env
    keys = ("SHIPIT_DOCKERHUB_TLS_DIR", "SHIPIT_DOCKERHUB_ADDRESS", "SHIPIT_DOCKERHUB_AUTH_ADDRESS")
    if not all(source.get(k) for k in keys):
        source = _read_env_file(env_file)
    tls_dir, address, auth_address = (source.get(k) for k in keys)
    if not (tls_dir and address and auth_address):
        return None
    return DockerHubSetup(Path(tls_dir), address, auth_address)


def dockerhub_environment_ready(env: Mapping[str, str] | None = None) -> str | None:
    """None when the Docker Hub stand-in can run here, else the reason to skip.

    Checks what ``.ci/dockerhub-setup`` prepares (TLS files, system trust for the engine,
    ``/etc/hosts``), the binaries, and that port 443 of both addresses can be bound.
    """
    setup = dockerhub_setup(env)
    if setup is None:
        return f"SHIPIT_DOCKERHUB_* unset and no {DOCKERHUB_ENV_FILE} (run .ci/dockerhub-setup)"
    if not (setup.cert.is_file() and setup.key.is_file()):
        return f"no cert.pem/key.pem in {setup.tls_dir} (run .ci/dockerhub-setup)"
    try:
        trusted = SYSTEM_TRUST_FILE.read_bytes() == setup.cert.read_bytes()
    except OSError:
        trusted = False
    if not trusted:
        return f"{SYSTEM_TRUST_FILE} is not the stand-in's certificate (run .ci/dockerhub-setup)"
    for host, address in ((REGISTRY_HOST, setup.address), (AUTH_HOST, setup.auth_address)):
        try:
            resolved = socket.gethostbyname(host)
        except OSError as exc:
            return f"{host} does not resolve ({exc}); run .ci/dockerhub-setup"
        if resolved != address or not address.startswith("127."):
            return f"{host} resolves to {resolved}, not {address}; refusing to use it"
    for binary in (REGISTRY_BINARY, "skopeo"):
        if shutil.which(binary) is None:
            return f"{binary} not installed"
    for address in (setup.address, setup.auth_address):
        if not port_is_free(443, address):
            reason = "in use" if os.geteuid() == 0 else "not bindable without root"
            return f"{address}:443 is {reason}"
    return None


def _registry_config(tmp_dir: Path, setup: DockerHubSetup, rootcertbundle: Path) -> Path:
    config: dict[str, Any] = {
        "version": "0.1",
        "log": {"level": "info", "accesslog": {"disabled": True}},
        "storage": {
            "filesystem": {"rootdirectory": str(tmp_dir / "storage")},
            "delete": {"enabled": True},
            "cache": {"blobdescriptor": "inmemory"},
        },
        "http": {
            "addr": f"{setup.address}:443",
            "secret": secrets.token_hex(16),
            "tls": {"certificate": str(setup.cert), "key": str(setup.key)},
            "headers": {"X-Content-Type-Options": ["nosniff"]},
        },
        "auth": {
            "token": {
                "realm": f"https://{AUTH_HOST}/token",
                "service": SERVICE,
                "issuer": ISSUER,
                "rootcertbundle": str(rootcertbundle),
            }
        },
        "health": {"storagedriver": {"enabled": False}},
    }
    path = tmp_dir / "config.yml"
    path.write_text(json.dumps(config, indent=2) + "\n")  # JSON is YAML
    return path


@dataclass
class DockerHub:
    """The running stand-in: the registry process, the token server, and an independent client
    (bearer tokens from the token server, skopeo)."""

    registry: Registry
    tokens: TokenServer
    setup: DockerHubSetup

    @property
    def ca_bundle(self) -> str:
        return str(self.setup.cert)

    def creds(self, username: str) -> str:
        account = self.tokens.accounts[username]
        return f"{account.username}:{account.token}"

    def token(self, username: str, scope: str) -> str:
        """A bearer token for ``scope`` from the token server (basic auth as ``username``)."""
        account = self.tokens.accounts[username]
        with requests.Session() as session:
            session.trust_env = False
            response = session.get(
                f"https://{AUTH_HOST}/token",
                params={"service": SERVICE, "scope": scope, "account": username},
                auth=(account.username, account.token),
                verify=self.ca_bundle,
                timeout=10,
            )
        response.raise_for_status()
        return str(response.json()["token"])

    def request(
        self, method: str, repo: str, path: str, username: str, **kwargs: Any
    ) -> requests.Response:
        """``method https://registry-1.docker.io/v2/REPO/PATH`` with a pull-scoped token."""
        token = self.token(username, f"repository:{repo}:pull")
        headers = {"Authorization": f"Bearer {token}", **kwargs.pop("headers", {})}
        with requests.Session() as session:
            session.trust_env = False
            return session.request(
                method,
                f"https://{REGISTRY_HOST}/v2/{repo}/{path}",
                headers=headers,
                verify=self.ca_bundle,
                timeout=30,
                **kwargs,
            )

    def manifest(self, repo: str, reference: str, username: str) -> tuple[str, dict[str, Any]]:
        """``(digest, manifest JSON)`` of ``repo`` at a tag or digest."""
        response = self.request(
            "GET", repo, f"manifests/{reference}", username, headers={"Accept": MANIFEST_ACCEPT}
        )
        if response.status_code != 200:
            raise RegistryError(f"GET {repo}:{reference}: HTTP {response.status_code}")
        return response.headers.get("Docker-Content-Digest", ""), response.json()

    def tags(self, repo: str, username: str) -> list[str]:
        response = self.request("GET", repo, "tags/list", username)
        if response.status_code == 404:
            return []
        response.raise_for_status()
        return sorted(response.json().get("tags") or [])

    def skopeo_digest(self, repo: str, tag: str, username: str) -> str:
        """The digest skopeo reports for ``docker.io/REPO:TAG`` (verified TLS, the user's creds)."""
        return skopeo_digest(
            f"docker.io/{repo}:{tag}",
            self.creds(username),
            tls_verify=True,
            cert_dir=self.setup.tls_dir,
        )


def engine_trust_problem(hub: DockerHub, username: str, tmp_dir: Path) -> str | None:
    """None when the Docker engine can log in to the stand-in (it trusts the certificate),
    else why not. The engine verifies Docker Hub with the system roots only, which Go loads
    once per process: an engine that verified any TLS peer before .ci/dockerhub-setup put its
    certificate in /etc/ssl/certs keeps refusing it until it restarts."""
    import docker

    account = hub.tokens.accounts[username]
    # A client of its own: docker-py keeps a login's credentials in the client object.
    api = docker.APIClient(version="auto", **docker.utils.kwargs_from_env())
    try:
        api.login(
            username=account.username,
            password=account.token,
            registry="https://index.docker.io/v1/",
            reauth=True,
            dockercfg_path=str(tmp_dir / "probe-config.json"),
        )
    except docker.errors.APIError as exc:
        text = str(getattr(exc, "explanation", None) or exc)
        if "x509" in text or "certificate" in text:
            return (
                f"the Docker engine does not trust the stand-in's certificate ({text}); it "
                f"loaded its system roots before {SYSTEM_TRUST_FILE} existed: restart dockerd"
            )
        return f"the engine could not log in to the stand-in: {text}"
    finally:
        api.close()
    return None


def _wait_ready(registry: Registry, ca_bundle: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if registry.process is None or registry.process.poll() is not None:
            raise RegistryError(f"docker-registry exited early:\n{registry.log_text()[-2000:]}")
        try:
            with requests.Session() as session:
                session.trust_env = False
                response = session.get(f"https://{REGISTRY_HOST}/v2/", verify=ca_bundle, timeout=2)
        except requests.RequestException as exc:
            last = str(exc)
        else:
            if (
                response.status_code == 401
                and "bearer" in response.headers.get("WWW-Authenticate", "").lower()
            ):
                return
            last = f"HTTP {response.status_code}"
        time.sleep(0.05)
    raise RegistryError(f"the Docker Hub stand-in is not ready after {timeout:.0f}s ({last})")


def _start_registry(tmp_dir: Path, setup: DockerHubSetup, tokens: TokenServer) -> Registry:
    bundle = tmp_dir / "token-signer.crt"
    bundle.write_bytes(tokens.cert_pem)
    config = _registry_config(tmp_dir, setup, bundle)
    log_path = tmp_dir / "registry.log"
    log_file = log_path.open("ab")
    registry = Registry(
        host=setup.address,
        port=443,
        root=tmp_dir / "storage",
        config_path=config,
        log_path=log_path,
        tls_cert=setup.cert,
        name="docker.io",
        cert_dir=setup.tls_dir,
        _log_file=log_file,
    )
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("REGISTRY_") and k.lower() not in {"http_proxy", "https_proxy"}
    }
    try:
        registry.process = subprocess.Popen(
            die_with_parent([REGISTRY_BINARY, "serve", str(config)]),
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        _wait_ready(registry, str(setup.cert), START_TIMEOUT)
    except BaseException:
        registry.stop()
        raise
    return registry


@contextmanager
def running_dockerhub(
    tmp_dir: Path, accounts: list[Account], *, setup: DockerHubSetup | None = None
) -> Iterator[DockerHub]:
    """Start the token server and the registry (check :func:`dockerhub_environment_ready`
    first); both stop when the block exits. Storage and logs live in ``tmp_dir``."""
    setup = setup or dockerhub_setup()
    if setup is None:
        raise RegistryError("no Docker Hub setup (run .ci/dockerhub-setup)")
    tmp_dir.mkdir(parents=True, exist_ok=True)
    with running_token_server(
        host=setup.auth_address,
        port=443,
        accounts=accounts,
        issuer=ISSUER,
        service=SERVICE,
        tls_cert=setup.cert,
        tls_key=setup.key,
    ) as tokens:
        registry = _start_registry(tmp_dir, setup, tokens)
        try:
            yield DockerHub(registry=registry, tokens=tokens, setup=setup)
        finally:
            registry.stop()
