"""Real OCI registries for tests: Debian's ``docker-registry`` (CNCF distribution 2.8).

Each registry is a plain subprocess on loopback with filesystem storage in a temporary
directory; nothing is pulled and nothing leaves the machine. Usage::

    with running_registry(tmp_path / "reg", username="u", password="p") as reg:
        ...  # docker push f"{reg.address}/team/app:1"
        assert reg.manifest_digest("team/app", "1") == pushed_digest

The Docker engine trusts ``127.0.0.1:PORT`` over plain HTTP without configuration.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import time
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import requests
from urllib3.exceptions import InsecureRequestWarning

from tests.support import die_with_parent
from tests.support.ports import LOOPBACK, free_port, port_is_free

REGISTRY_BINARY = "docker-registry"

#: Accept header for manifest look-ups: docker v2 and OCI, single manifests and indexes.
MANIFEST_ACCEPT = ", ".join(
    [
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.index.v1+json",
    ]
)

# Moto's ECR: account, the credentials GetAuthorizationToken hands out, and where CI keeps the
# TLS material and host name that .ci/ecr-setup prepares.
ECR_ACCOUNT = "123456789012"
ECR_USERNAME = "AWS"
ECR_PASSWORD = f"{ECR_ACCOUNT}-auth-token"
ECR_ENV_FILE = Path("/var/lib/shipit-ci/ecr.env")

START_TIMEOUT = 20.0


class RegistryError(RuntimeError):
    """The registry process could not be started or answered unexpectedly."""


def _clean_env() -> dict[str, str]:
    """Environment for child processes: no REGISTRY_* overrides, no proxies."""
    proxy_vars = {"http_proxy", "https_proxy", "all_proxy", "no_proxy"}
    return {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("REGISTRY_") and key.lower() not in proxy_vars
    }


def _session() -> requests.Session:
    session = requests.Session()
    session.trust_env = False  # never route loopback traffic through an environment proxy
    return session


def htpasswd_line(username: str, password: str) -> str:
    """A bcrypt htpasswd line, from ``htpasswd -Bin`` or the ``bcrypt`` module."""
    if shutil.which("htpasswd"):
        result = subprocess.run(
            ["htpasswd", "-Bin", username],
            input=password,
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        )
        return result.stdout.strip()
    try:
        import bcrypt
    except ImportError as exc:  # pragma: no cover - depends on the machine
        raise RegistryError("need `htpasswd` (apache2-utils) or the bcrypt module") from exc
    hashed: bytes = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=5))
    return f"{username}:{hashed.decode()}"


@dataclass
class Registry:
    """A running ``docker-registry`` process and a small client for its HTTP API."""

    host: str
    port: int
    root: Path
    config_path: Path
    log_path: Path
    username: str | None = None
    password: str | None = None
    tls_cert: Path | None = None
    #: Host name used in image references (defaults to ``address``; ECR: moto's host name).
    name: str | None = None
    #: Directory with ``*.crt`` CA files for skopeo ``--cert-dir`` (TLS registries).
    cert_dir: Path | None = None
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    _log_file: IO[bytes] | None = field(default=None, repr=False)

    @property
    def address(self) -> str:
        """``HOST:PORT`` the registry listens on, e.g. ``127.0.0.1:41234``."""
        return f"{self.host}:{self.port}"

    @property
    def tls(self) -> bool:
        return self.tls_cert is not None

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.address}"

    @property
    def registry(self) -> str:
        """The registry part of image references pushed here."""
        return self.name or self.address

    @property
    def creds(self) -> str | None:
        """``USER:PASS`` for skopeo ``--creds``, or None for an open registry."""
        if self.username is None or self.password is None:
            return None
        return f"{self.username}:{self.password}"

    @property
    def auth(self) -> tuple[str, str] | None:
        if self.username is None or self.password is None:
            return None
        return (self.username, self.password)

    def auth_config(self) -> dict[str, str] | None:
        """docker-py ``auth_config`` for this registry, or None when it has no auth."""
        if self.username is None or self.password is None:
            return None
        return {"username": self.username, "password": self.password}

    def reference(self, repo: str, tag: str) -> str:
        return f"{self.registry}/{repo}:{tag}"

    # -- HTTP API (loopback only) ---------------------------------------------------------

    def request(
        self, method: str, path: str, *, auth: bool = True, timeout: float = 10.0, **kwargs: Any
    ) -> requests.Response:
        """Send ``method`` to ``self.url + path`` (basic auth unless ``auth=False``)."""
        with _session() as session, warnings.catch_warnings():
            warnings.simplefilter("ignore", InsecureRequestWarning)
            return session.request(
                method,
                self.url + path,
                auth=self.auth if auth else None,
                verify=False,
                timeout=timeout,
                **kwargs,
            )

    def manifest_digest(self, repo: str, tag: str) -> str | None:
        """``Docker-Content-Digest`` of ``repo:tag`` (HEAD), or None when it does not exist."""
        response = self.request(
            "HEAD", f"/v2/{repo}/manifests/{tag}", headers={"Accept": MANIFEST_ACCEPT}
        )
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise RegistryError(f"HEAD manifest {repo}:{tag}: HTTP {response.status_code}")
        return response.headers.get("Docker-Content-Digest")

    def manifest(self, repo: str, reference: str) -> tuple[str, dict[str, Any]]:
        """``(media type, manifest JSON)`` of ``repo`` at a tag or digest."""
        response = self.request(
            "GET", f"/v2/{repo}/manifests/{reference}", headers={"Accept": MANIFEST_ACCEPT}
        )
        if response.status_code != 200:
            raise RegistryError(f"GET manifest {repo}:{reference}: HTTP {response.status_code}")
        return response.headers.get("Content-Type", ""), response.json()

    def tags(self, repo: str) -> list[str]:
        """Tags of ``repo`` (empty when the repository does not exist)."""
        response = self.request("GET", f"/v2/{repo}/tags/list")
        if response.status_code == 404:
            return []
        if response.status_code != 200:
            raise RegistryError(f"GET tags {repo}: HTTP {response.status_code}")
        return sorted(response.json().get("tags") or [])

    def catalog(self) -> list[str]:
        response = self.request("GET", "/v2/_catalog")
        response.raise_for_status()
        return list(response.json().get("repositories") or [])

    def skopeo_digest(self, repo: str, tag: str) -> str:
        """The digest skopeo (an independent client) reports for ``repo:tag``."""
        return skopeo_digest(
            self.reference(repo, tag),
            self.creds,
            tls_verify=self.cert_dir is not None,
            cert_dir=self.cert_dir,
        )

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    # -- process ---------------------------------------------------------------------------

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self) -> None:
        """Terminate the registry (SIGTERM, then SIGKILL after 5 s). Idempotent."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None


def _write_config(
    tmp_dir: Path,
    host: str,
    port: int,
    *,
    htpasswd: Path | None,
    tls_cert: Path | None,
    tls_key: Path | None,
    access_log: bool,
) -> Path:
    http: dict[str, Any] = {
        "addr": f"{host}:{port}",
        "secret": secrets.token_hex(16),
        "headers": {"X-Content-Type-Options": ["nosniff"]},
    }
    if tls_cert is not None and tls_key is not None:
        http["tls"] = {"certificate": str(tls_cert), "key": str(tls_key)}
    config: dict[str, Any] = {
        "version": "0.1",
        "log": {
            "level": "warn",
            "accesslog": {"disabled": not access_log},
            "fields": {"service": "registry"},
        },
        "storage": {
            "filesystem": {"rootdirectory": str(tmp_dir / "storage")},
            "delete": {"enabled": True},
            "cache": {"blobdescriptor": "inmemory"},
        },
        "http": http,
        "health": {"storagedriver": {"enabled": False}},
    }
    if htpasswd is not None:
        config["auth"] = {"htpasswd": {"realm": "shipit-test", "path": str(htpasswd)}}
    path = tmp_dir / "config.yml"
    # JSON is valid YAML, and it quotes every path and secret correctly.
    path.write_text(json.dumps(config, indent=2) + "\n")
    return path


def _wait_ready(registry: Registry, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last_error = "no answer"
    while time.monotonic() < deadline:
        if registry.process is None or registry.process.poll() is not None:
            raise RegistryError(f"docker-registry exited early:\n{registry.log_text()[-2000:]}")
        try:
            response = registry.request("GET", "/v2/", auth=False, timeout=2)
        except requests.RequestException as exc:
            last_error = str(exc)
        else:
            if response.status_code in (200, 401):
                return
            last_error = f"HTTP {response.status_code}"
        time.sleep(0.05)
    raise RegistryError(
        f"docker-registry on {registry.address} not ready after {timeout:.0f}s ({last_error}):\n"
        f"{registry.log_text()[-2000:]}"
    )


def _start(
    tmp_dir: Path,
    *,
    host: str,
    port: int,
    username: str | None,
    password: str | None,
    tls_cert: Path | None,
    tls_key: Path | None,
    name: str | None,
    cert_dir: Path | None,
    access_log: bool,
    timeout: float,
) -> Registry:
    htpasswd: Path | None = None
    if username is not None and password is not None:
        htpasswd = tmp_dir / "htpasswd"
        htpasswd.write_text(htpasswd_line(username, password) + "\n")
    config = _write_config(
        tmp_dir,
        host,
        port,
        htpasswd=htpasswd,
        tls_cert=tls_cert,
        tls_key=tls_key,
        access_log=access_log,
    )
    log_path = tmp_dir / "registry.log"
    log_file = log_path.open("ab")
    registry = Registry(
        host=host,
        port=port,
        root=tmp_dir / "storage",
        config_path=config,
        log_path=log_path,
        username=username,
        password=password,
        tls_cert=tls_cert,
        name=name,
        cert_dir=cert_dir,
        _log_file=log_file,
    )
    try:
        registry.process = subprocess.Popen(
            die_with_parent([REGISTRY_BINARY, "serve", str(config)]),
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=_clean_env(),
            start_new_session=True,
        )
        _wait_ready(registry, timeout)
    except BaseException:
        registry.stop()
        raise
    return registry


@contextmanager
def running_registry(
    tmp_dir: Path,
    *,
    username: str | None = None,
    password: str | None = None,
    tls_cert: Path | None = None,
    tls_key: Path | None = None,
    host: str = LOOPBACK,
    port: int | None = None,
    name: str | None = None,
    cert_dir: Path | None = None,
    access_log: bool = False,
    timeout: float = START_TIMEOUT,
) -> Iterator[Registry]:
    """Run ``docker-registry serve`` on ``host:port`` (a free port by default).

    Storage, config, htpasswd file and ``registry.log`` live in ``tmp_dir`` (one registry per
    directory). Basic auth is on when both ``username`` and ``password`` are given; TLS when
    ``tls_cert`` and ``tls_key`` are. The registry is stopped when the block exits.
    """
    if shutil.which(REGISTRY_BINARY) is None:
        raise RegistryError(f"{REGISTRY_BINARY} not installed (Debian package docker-registry)")
    if (tls_cert is None) != (tls_key is None):
        raise ValueError("give both tls_cert and tls_key, or neither")
    tmp_dir.mkdir(parents=True, exist_ok=True)
    attempts = 1 if port is not None else 3
    registry: Registry | None = None
    for attempt in range(attempts):
        try:
            registry = _start(
                tmp_dir,
                host=host,
                port=port if port is not None else free_port(host),
                username=username,
                password=password,
                tls_cert=tls_cert,
                tls_key=tls_key,
                name=name,
                cert_dir=cert_dir,
                access_log=access_log,
                timeout=timeout,
            )
            break
        except RegistryError as exc:
            # A free port can be taken between choosing it and binding it: retry on a new one.
            if "address already in use" not in str(exc) or attempt == attempts - 1:
                raise
    assert registry is not None
    try:
        yield registry
    finally:
        registry.stop()


# -- skopeo: an independent client --------------------------------------------------------


def skopeo_digest(
    reference: str,
    creds: str | None = None,
    tls_verify: bool = False,
    *,
    cert_dir: Path | None = None,
    timeout: float = 60.0,
) -> str:
    """Manifest digest of ``reference`` as skopeo 1.9 reports it (``{{.Digest}}``).

    ``reference`` is ``HOST[:PORT]/REPO:TAG`` (``docker://`` is added when missing). For a
    manifest list/index this is the digest of the index itself. ``tls_verify=False`` lets
    skopeo use plain HTTP or an unverified certificate; ``cert_dir`` holds ``*.crt`` CA files.
    """
    if shutil.which("skopeo") is None:
        raise RegistryError("skopeo not installed")
    if "://" not in reference:
        reference = f"docker://{reference}"
    command = [
        "skopeo",
        "inspect",
        "--no-tags",
        f"--tls-verify={'true' if tls_verify else 'false'}",
        "--format",
        "{{.Digest}}",
    ]
    command += ["--creds", creds] if creds else ["--no-creds"]
    if cert_dir is not None:
        command += ["--cert-dir", str(cert_dir)]
    command.append(reference)
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=timeout, env=_clean_env(), check=False
    )
    if result.returncode != 0:
        raise RegistryError(f"skopeo inspect {reference} failed: {result.stderr.strip()}")
    return result.stdout.strip()


# -- ECR: moto's endpoint backed by a real registry ---------------------------------------


@dataclass(frozen=True)
class EcrSetup:
    """What ``.ci/ecr-setup`` prepared: TLS material and moto's registry host name."""

    tls_dir: Path
    host: str

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
        line = line.strip()
        if line.startswith("#") or not line:
            continue
        line = line.removeprefix("export ").strip()
        for word in line.split():
            key, sep, value = word.partition("=")
            if sep:
                values[key] = value.strip("'\"")
    return values


def ecr_setup(
    env: Mapping[str, str] | None = None, env_file: Path = ECR_ENV_FILE
) -> EcrSetup | None:
    """``SHIPIT_ECR_TLS_DIR``/``SHIPIT_ECR_HOST`` from ``env`` (default: os.environ), else from
    the file ``.ci/ecr-setup`` writes; None when neither has them."""
    source: Mapping[str, str] = os.environ if env is None else env
    if not (source.get("SHIPIT_ECR_TLS_DIR") and source.get("SHIPIT_ECR_HOST")):
        source = _read_env_file(env_file)
    tls_dir, host = source.get("SHIPIT_ECR_TLS_DIR"), source.get("SHIPIT_ECR_HOST")
    if not tls_dir or not host:
        return None
    return EcrSetup(Path(tls_dir), host)


def ecr_environment_ready(env: Mapping[str, str] | None = None) -> str | None:
    """None when an ECR registry can run here, else the reason to skip.

    Checks what ``.ci/ecr-setup`` prepares (TLS files, ``/etc/hosts`` entry) and that
    127.0.0.1:443 can be bound. Never changes the machine.
    """
    setup = ecr_setup(env)
    if setup is None:
        return f"SHIPIT_ECR_TLS_DIR/SHIPIT_ECR_HOST unset and no {ECR_ENV_FILE} (run .ci/ecr-setup)"
    if not (setup.cert.is_file() and setup.key.is_file()):
        return f"no cert.pem/key.pem in {setup.tls_dir} (run .ci/ecr-setup)"
    try:
        address = socket.gethostbyname(setup.host)
    except OSError as exc:
        return f"{setup.host} does not resolve ({exc}); run .ci/ecr-setup"
    if address != LOOPBACK:
        return f"{setup.host} resolves to {address}, not {LOOPBACK}; refusing to use it"
    if shutil.which(REGISTRY_BINARY) is None:
        return f"{REGISTRY_BINARY} not installed"
    if not port_is_free(443, LOOPBACK):
        reason = "in use" if os.geteuid() == 0 else "not bindable without root"
        return f"{LOOPBACK}:443 is {reason}"
    return None


@contextmanager
def running_ecr_registry(
    tmp_dir: Path,
    tls_dir: Path,
    host: str,
    *,
    port: int = 443,
    username: str = ECR_USERNAME,
    password: str = ECR_PASSWORD,
    timeout: float = START_TIMEOUT,
) -> Iterator[Registry]:
    """A TLS registry on 127.0.0.1:443 standing in for moto's ``ACCOUNT.dkr.ecr.REGION...`` host.

    Credentials are the ones moto's GetAuthorizationToken returns. ``Registry.registry`` is
    ``host`` (port 443 implied), so ``reg.reference("app", "1")`` is what the engine pushes to.
    Check :func:`ecr_environment_ready` first.
    """
    if socket.gethostbyname(host) != LOOPBACK:
        raise RegistryError(f"{host} must resolve to {LOOPBACK} (run .ci/ecr-setup)")
    name = host if port == 443 else f"{host}:{port}"
    with running_registry(
        tmp_dir,
        username=username,
        password=password,
        tls_cert=tls_dir / "cert.pem",
        tls_key=tls_dir / "key.pem",
        host=LOOPBACK,
        port=port,
        name=name,
        cert_dir=tls_dir if any(tls_dir.glob("*.crt")) else None,
        timeout=timeout,
    ) as registry:
        yield registry
