"""The registry HTTP client trusts registries as the engine does, against real registries.

- a private CA: trusted through certs.d/HOST/ca.crt, REQUESTS_CA_BUNDLE or SSL_CERT_FILE, and
  refused (a TLS error with a hint) without them;
- a client certificate from certs.d/HOST/client.cert + client.key;
- an insecure registry on a non-loopback address (a dummy interface made for the test): the
  engine's RegistryConfig (a `docker info` answer) marks it insecure by name or by CIDR, and
  the client then tries HTTPS without verification, then plain HTTP; without the mark, it
  refuses; the real engine's own answer is read too;
- a proxy run by the test: HTTPS through CONNECT, HTTP forwarded, NO_PROXY respected,
  loopback never proxied.

Creating the interface needs root: those tests skip with the reason otherwise (CI is root).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from shipit.adapters.oci import RegistryClient
from shipit.errors import AuthError, RegistryError
from shipit.model import Auth
from tests.support import missing_binaries
from tests.support.registry import running_registry, skopeo_digest
from tests.support.trust import (
    Pki,
    can_make_interfaces,
    dummy_address,
    make_pki,
    recording_proxy,
    running_tls_registry,
)
from tests.test_reliability import TinyImage, shipit, tiny

__all__ = ["tiny"]  # the fixture, used here as in tests/test_reliability.py

pytestmark = pytest.mark.integration

USER, PASSWORD = "trust-user", "Trust-Passw0rd-1"
# A `docker info` RegistryConfig as dockerd 20.10 answers it with no insecure-registries set.
DEFAULT_CONFIG: dict[str, Any] = {
    "IndexConfigs": {"docker.io": {"Name": "docker.io", "Official": True, "Secure": True}},
    "InsecureRegistryCIDRs": ["127.0.0.0/8"],
    "Mirrors": [],
}
NO_INSECURE: dict[str, Any] = {"IndexConfigs": {}, "InsecureRegistryCIDRs": []}


def auth() -> Auth:
    return Auth(username=USER, password=PASSWORD, registry="")


def client(host: str, certs: Path, env: dict[str, str], config: dict[str, Any]) -> RegistryClient:
    return RegistryClient(
        host, auth(), timeout=10, certs_dir=certs, env=env, engine_config=lambda: config
    )


def works(registry: RegistryClient) -> None:
    """The client reaches the registry: a missing tag is None (404), the login is accepted."""
    assert registry.manifest("trust/app", "missing") is None
    registry.check_login()


@pytest.fixture(scope="module")
def tools() -> None:
    reason = missing_binaries("docker-registry", "openssl", "htpasswd")
    if reason:
        pytest.skip(reason)


@pytest.fixture(scope="module")
def address(tools: None) -> Iterator[str | None]:
    """A non-loopback address on this machine, or None when it cannot be made (not root)."""
    if can_make_interfaces() is not None:
        yield None
        return
    with dummy_address() as made:
        yield made


def need(address: str | None) -> str:
    if address is None:
        pytest.skip(can_make_interfaces() or "no dummy interface")
    return address


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory, address: str | None) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"), (address,) if address else ())


@pytest.fixture
def certs(tmp_path: Path) -> Path:
    """An empty certs.d folder (the real /etc/docker/certs.d is only CI's to edit)."""
    path = tmp_path / "certs.d"
    path.mkdir()
    return path


def trust_ca(certs: Path, host: str, pki: Pki, *, client_pair: bool = False) -> None:
    folder = certs / host
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(pki.ca, folder / "ca.crt")
    if client_pair:
        shutil.copy(pki.client_cert, folder / "client.cert")
        shutil.copy(pki.client_key, folder / "client.key")


@pytest.fixture
def tls_registry(tmp_path: Path, pki: Pki) -> Iterator[str]:
    """A TLS registry with basic auth on loopback, its certificate from the private CA."""
    with running_registry(
        tmp_path / "reg",
        username=USER,
        password=PASSWORD,
        tls_cert=pki.server_cert,
        tls_key=pki.server_key,
    ) as registry:
        yield registry.address


# ---------------------------------------------------------------- a private CA


def test_private_ca_from_certs_d(tls_registry: str, certs: Path, pki: Pki) -> None:
    trust_ca(certs, tls_registry, pki)
    registry = client(tls_registry, certs, {}, NO_INSECURE)
    works(registry)
    assert (registry.scheme, registry.verify) == ("https", True)


@pytest.mark.parametrize("variable", ["REQUESTS_CA_BUNDLE", "SSL_CERT_FILE", "CURL_CA_BUNDLE"])
def test_private_ca_from_the_environment(
    variable: str, tls_registry: str, certs: Path, pki: Pki
) -> None:
    registry = client(tls_registry, certs, {variable: str(pki.ca)}, NO_INSECURE)
    works(registry)
    assert (registry.scheme, registry.verify) == ("https", True)


def test_unknown_ca_is_a_tls_error_naming_where_to_put_it(tls_registry: str, certs: Path) -> None:
    registry = client(tls_registry, certs, {}, NO_INSECURE)
    with pytest.raises(RegistryError) as info:
        registry.manifest("trust/app", "missing")
    assert info.value.kind == "tls"
    assert "certificate verify failed" in info.value.message
    assert f"/etc/docker/certs.d/{tls_registry}/ca.crt" in (info.value.hint or "")


def test_wrong_password_over_tls_is_an_auth_error(tls_registry: str, certs: Path, pki: Pki) -> None:
    trust_ca(certs, tls_registry, pki)
    registry = RegistryClient(
        tls_registry,
        Auth(username=USER, password="wrong-one", registry=""),
        certs_dir=certs,
        env={},
        engine_config=lambda: NO_INSECURE,
    )
    with pytest.raises(AuthError):
        registry.check_login()


def test_client_certificate_from_certs_d(tmp_path: Path, certs: Path, pki: Pki) -> None:
    with running_tls_registry(tmp_path / "mtls", pki, client_certs=True) as host:
        trust_ca(certs, host, pki)
        with pytest.raises(RegistryError) as info:
            client(host, certs, {}, NO_INSECURE).manifest("trust/app", "missing")
        assert info.value.kind in ("tls", "unreachable"), info.value.message
        trust_ca(certs, host, pki, client_pair=True)
        assert client(host, certs, {}, NO_INSECURE).manifest("trust/app", "missing") is None


# ---------------------------------------------------------------- insecure registries elsewhere


@pytest.fixture
def plain_registry(tmp_path: Path, address: str | None) -> Iterator[str]:
    """A plain-HTTP registry with basic auth on the non-loopback address."""
    with running_registry(
        tmp_path / "plain", username=USER, password=PASSWORD, host=need(address)
    ) as registry:
        yield registry.address


def test_insecure_by_index_config_falls_back_to_http(plain_registry: str, certs: Path) -> None:
    config = {**DEFAULT_CONFIG, "IndexConfigs": {plain_registry: {"Secure": False}}}
    registry = client(plain_registry, certs, {}, config)
    works(registry)
    assert registry.scheme == "http"


def test_insecure_by_cidr_falls_back_to_http(plain_registry: str, certs: Path) -> None:
    config = {**DEFAULT_CONFIG, "InsecureRegistryCIDRs": ["127.0.0.0/8", "10.213.0.0/16"]}
    registry = client(plain_registry, certs, {}, config)
    works(registry)
    assert registry.scheme == "http"


def test_not_insecure_for_the_engine_is_refused(plain_registry: str, certs: Path) -> None:
    with pytest.raises(RegistryError) as info:
        client(plain_registry, certs, {}, DEFAULT_CONFIG).manifest("trust/app", "missing")
    assert info.value.kind == "tls"
    assert "insecure-registries" in (info.value.hint or "")


@pytest.fixture
def engine_insecure(docker_api: Any) -> None:
    """The real engine treats 10.213.0.0/16 as insecure (CI runs .ci/insecure-setup)."""
    import ipaddress

    cidrs = (docker_api.info().get("RegistryConfig") or {}).get("InsecureRegistryCIDRs") or []
    wanted = ipaddress.ip_network("10.213.0.0/16")
    if not any(wanted.subnet_of(ipaddress.ip_network(c)) for c in cidrs if "." in c):
        pytest.skip("the engine does not list 10.213.0.0/16 as insecure: CI=1 .ci/insecure-setup")


def test_the_real_engines_registry_config_is_read(
    plain_registry: str, certs: Path, engine_insecure: None
) -> None:
    """Without an `engine_config`, the client asks the engine (`docker info`)."""
    registry = RegistryClient(plain_registry, auth(), timeout=10, certs_dir=certs, env={})
    works(registry)
    assert registry.scheme == "http"


def test_push_to_an_insecure_registry_elsewhere(
    tiny: Callable[..., TinyImage],
    tmp_path: Path,
    address: str | None,
    engine_insecure: None,
) -> None:
    """The whole push to a registry the engine trusts as insecure on another address: the
    release-tag check and the extra tags go through the registry API over plain HTTP."""
    with running_registry(
        tmp_path / "insecure", username=USER, password=PASSWORD, host=need(address)
    ) as registry:
        image = tiny("ignored", "--version", "4.5.6")
        env = {"SHIPIT_REGISTRY_USERNAME": USER, "SHIPIT_REGISTRY_PASSWORD": PASSWORD}
        args = ["push", "--registry", registry.address, "--name", image.name]
        args += ["--version", "4.5.6", "--no-latest", "--json"]
        first = shipit(*args, cwd=image.context, env=env)
        assert first.returncode == 0, first.stderr
        pushed = {p["reference"]: p for p in json.loads(first.stdout)["pushed"]}
        base = f"{registry.address}/{image.name}"
        assert [pushed[f"{base}:{t}"]["status"] for t in ("4.5.6", "4.5", "4")] == [
            "pushed",
            "tagged",
            "tagged",
        ]
        [digest] = {p["digest"] for p in pushed.values()}
        for tag in ("4.5.6", "4.5", "4"):
            assert skopeo_digest(f"{base}:{tag}", registry.creds) == digest
        again = shipit(*args, cwd=image.context, env=env)
        assert again.returncode == 0, again.stderr
        assert "already up to date" in again.stderr
        assert PASSWORD not in first.output + again.output


def test_insecure_tls_registry_is_used_without_verification(
    tmp_path: Path, address: str | None, certs: Path, pki: Pki
) -> None:
    """The engine's first try for an insecure registry is HTTPS without verification."""
    with running_tls_registry(tmp_path / "itls", pki, host=need(address)) as host:
        config = {**DEFAULT_CONFIG, "IndexConfigs": {host: {"Secure": False}}}
        registry = client(host, certs, {}, config)
        assert registry.manifest("trust/app", "missing") is None
        assert (registry.scheme, registry.verify) == ("https", False)


# ---------------------------------------------------------------- a proxy


@pytest.fixture
def tls_registry_elsewhere(tmp_path: Path, address: str | None, pki: Pki) -> Iterator[str]:
    with running_registry(
        tmp_path / "tls-elsewhere",
        username=USER,
        password=PASSWORD,
        tls_cert=pki.server_cert,
        tls_key=pki.server_key,
        host=need(address),
    ) as registry:
        yield registry.address


def test_https_goes_through_the_proxy(tls_registry_elsewhere: str, certs: Path, pki: Pki) -> None:
    host = tls_registry_elsewhere
    trust_ca(certs, host, pki)
    with recording_proxy() as proxy:
        works(client(host, certs, {"HTTPS_PROXY": proxy.url}, NO_INSECURE))
    assert proxy.requests and set(proxy.requests) == {f"CONNECT {host}"}


def test_http_is_forwarded_by_the_proxy(plain_registry: str, certs: Path) -> None:
    config = {**DEFAULT_CONFIG, "IndexConfigs": {plain_registry: {"Secure": False}}}
    env = {"https_proxy": "", "http_proxy": ""}
    with recording_proxy() as proxy:
        env = {"HTTPS_PROXY": proxy.url, "HTTP_PROXY": proxy.url}
        works(client(plain_registry, certs, env, config))
    assert f"GET http://{plain_registry}/v2/trust/app/manifests/missing" in proxy.requests
    assert f"CONNECT {plain_registry}" in proxy.requests  # the HTTPS attempts went there too


def test_no_proxy_is_respected(tls_registry_elsewhere: str, certs: Path, pki: Pki) -> None:
    host = tls_registry_elsewhere
    trust_ca(certs, host, pki)
    with recording_proxy() as proxy:
        env = {"HTTPS_PROXY": proxy.url, "NO_PROXY": f"example.com,{host.split(':')[0]}"}
        works(client(host, certs, env, NO_INSECURE))
    assert proxy.requests == []


def test_loopback_is_never_proxied(tls_registry: str, certs: Path, pki: Pki) -> None:
    trust_ca(certs, tls_registry, pki)
    with recording_proxy() as proxy:
        env = {"HTTPS_PROXY": proxy.url, "HTTP_PROXY": proxy.url}
        works(client(tls_registry, certs, env, NO_INSECURE))
    assert proxy.requests == []


# ---------------------------------------------------------------- the credentials check


def test_push_access_check_starts_and_cancels_an_upload(tmp_path: Path) -> None:
    """What shipit asks before believing an engine's `unauthorized`, on basic auth."""
    with running_registry(tmp_path / "reg", username=USER, password=PASSWORD) as registry:
        RegistryClient(registry.address, auth(), timeout=10).check_push_access("trust/app")
        uploads = registry.root / "docker/registry/v2/repositories/trust/app/_uploads"
        # Cancelled: the registry keeps only the hash state of an upload it deleted.
        assert uploads.is_dir() and not [*uploads.rglob("startedat"), *uploads.rglob("data")]
        wrong = Auth(username=USER, password="not-it", registry="")
        with pytest.raises(AuthError):
            RegistryClient(registry.address, wrong, timeout=10).check_push_access("trust/app")


def test_push_access_check_on_docker_hubs_token_flow(tmp_path: Path, docker_api: Any) -> None:
    """On the Docker Hub stand-in: good credentials pass, a read-only token and an account
    without the namespace are refused (valid credentials, no push scope), a wrong token too;
    `check_login` (what `docker login` checks) accepts the read-only token."""
    from tests.support.dockerhub import dockerhub_environment_ready, running_dockerhub
    from tests.support.tokenserver import Account

    reason = dockerhub_environment_ready()
    if reason:
        pytest.skip(f"Docker Hub stand-in unavailable: {reason}")
    writer, reader, outsider = "dckr_pat_writer-1", "dckr_pat_reader-1", "dckr_pat_outsider-1"
    accounts = [
        Account("writer", writer, namespaces=("acme",)),
        Account("reader", reader, namespaces=("acme",), read_only=True),
        Account("outsider", outsider),
    ]

    def hub(user: str, token: str) -> RegistryClient:
        return RegistryClient(
            "docker.io", Auth(username=user, password=token, registry="docker.io")
        )

    with running_dockerhub(tmp_path / "hub", accounts):
        hub("writer", writer).check_push_access("acme/app")
        hub("reader", reader).check_login()
        for user, token in (("reader", reader), ("outsider", outsider), ("writer", "dckr_pat_x")):
            with pytest.raises(AuthError):
                hub(user, token).check_push_access("acme/app")
