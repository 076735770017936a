"""Registry trust like the engine's, without a network: insecure registries from `docker info`,
proxies from the environment, certs.d's files. The real registries are in
tests/test_integration_trust.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from shipit.adapters.registry_trust import (
    EngineRegistryConfig,
    HostCerts,
    is_loopback,
    proxy_for,
    split_host,
    ssl_context,
)
from shipit.errors import UsageError

# `docker info` on an engine started with --insecure-registry 10.9.0.7:5000 and
# --insecure-registry 10.213.0.0/16 (dockerd 20.10 spells it so).
INFO = {
    "IndexConfigs": {
        "docker.io": {"Mirrors": [], "Name": "docker.io", "Official": True, "Secure": True},
        "10.9.0.7:5000": {
            "Mirrors": [],
            "Name": "10.9.0.7:5000",
            "Official": False,
            "Secure": False,
        },
    },
    "InsecureRegistryCIDRs": ["10.213.0.0/16", "127.0.0.0/8"],
    "Mirrors": [],
}


def resolver(table: dict[str, list[str]]):  # type: ignore[no-untyped-def]
    return lambda name: table.get(name, [name] if name[0].isdigit() else [])


def test_an_index_config_marked_insecure_is_insecure() -> None:
    config = EngineRegistryConfig.from_info(INFO)
    assert config.is_insecure("10.9.0.7:5000", resolver({}))
    assert not config.is_insecure("10.9.0.7:5001", resolver({}))  # the entry names a port


def test_an_address_in_the_insecure_cidrs_is_insecure() -> None:
    config = EngineRegistryConfig.from_info(INFO)
    assert config.is_insecure("10.213.4.1:5000", resolver({}))
    assert config.is_insecure("127.0.0.1:5000", resolver({}))
    assert not config.is_insecure("10.214.0.1:5000", resolver({}))


def test_a_name_is_insecure_when_one_of_its_addresses_is() -> None:
    config = EngineRegistryConfig.from_info(INFO)
    table = {"reg.internal": ["192.0.2.1", "10.213.9.9"], "other.internal": ["192.0.2.1"]}
    assert config.is_insecure("reg.internal:443", resolver(table))
    assert not config.is_insecure("other.internal", resolver(table))
    assert not config.is_insecure("nowhere.invalid", resolver(table))  # unresolved: secure


def test_a_secure_index_config_wins_over_the_cidrs() -> None:
    info = {**INFO, "IndexConfigs": {"10.213.0.1:443": {"Secure": True}}}
    assert not EngineRegistryConfig.from_info(info).is_insecure("10.213.0.1:443", resolver({}))


def test_an_unreadable_answer_is_read_as_far_as_it_goes() -> None:
    config = EngineRegistryConfig.from_info(
        {"IndexConfigs": {"x": "no", "y": {"Secure": "no"}}, "InsecureRegistryCIDRs": ["bad", 7]}
    )
    assert config == EngineRegistryConfig()
    assert EngineRegistryConfig.from_info(None) == EngineRegistryConfig()


@pytest.mark.parametrize(
    ("host", "name", "loopback"),
    [
        ("127.0.0.1:5000", "127.0.0.1", True),
        ("localhost", "localhost", True),
        ("[::1]:5000", "::1", True),
        ("10.0.0.1:443", "10.0.0.1", False),
        ("registry.example.com", "registry.example.com", False),
    ],
)
def test_hosts_split_and_loopback(host: str, name: str, loopback: bool) -> None:
    assert split_host(host) == name
    assert is_loopback(host) is loopback


PROXY = "http://127.0.0.1:3128"


@pytest.mark.parametrize("variable", ["HTTPS_PROXY", "https_proxy", "ALL_PROXY"])
def test_https_goes_through_the_proxy_of_the_environment(variable: str) -> None:
    assert proxy_for("https://10.0.0.1:5000/v2/", {variable: PROXY}) == PROXY


def test_http_uses_http_proxy() -> None:
    env = {"HTTP_PROXY": "http://p:1", "HTTPS_PROXY": "http://p:2"}
    assert proxy_for("http://10.0.0.1:5000/v2/", env) == "http://p:1"
    assert proxy_for("https://10.0.0.1:5000/v2/", env) == "http://p:2"


@pytest.mark.parametrize(
    "no_proxy",
    ["10.0.0.1", "10.0.0.0/8", "10.0.0.1:5000", "*", "other, 10.0.0.1 ,x"],
)
def test_no_proxy_entries_are_respected(no_proxy: str) -> None:
    assert (
        proxy_for("https://10.0.0.1:5000/v2/", {"HTTPS_PROXY": PROXY, "NO_PROXY": no_proxy}) is None
    )


def test_no_proxy_domains_match_subdomains_only() -> None:
    env = {"HTTPS_PROXY": PROXY, "no_proxy": ".example.com"}
    assert proxy_for("https://reg.example.com/v2/", env) is None
    assert proxy_for("https://example.com/v2/", env) is None
    assert proxy_for("https://badexample.com/v2/", env) == PROXY


@pytest.mark.parametrize("url", ["https://127.0.0.1:5000/v2/", "http://localhost:5000/v2/"])
def test_loopback_is_never_proxied(url: str) -> None:
    assert proxy_for(url, {"HTTPS_PROXY": PROXY, "HTTP_PROXY": PROXY}) is None


def test_no_proxy_variables_means_direct() -> None:
    assert proxy_for("https://10.0.0.1/v2/", {}) is None


def test_certs_dir_cas_and_client_pairs(tmp_path: Path) -> None:
    for name in ("ca.crt", "other.crt", "client.cert", "client.key"):
        (tmp_path / name).write_text("x")
    certs = HostCerts.read(tmp_path)
    assert certs.cas == (tmp_path / "ca.crt", tmp_path / "other.crt")
    assert certs.client_pairs == ((tmp_path / "client.cert", tmp_path / "client.key"),)
    assert HostCerts.read(tmp_path / "missing") == HostCerts()


def test_a_client_cert_without_its_key_is_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / "client.cert").write_text("x")
    with pytest.raises(UsageError, match=r"missing key client\.key"):
        HostCerts.read(tmp_path)


def test_a_key_without_its_cert_is_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / "client.key").write_text("x")
    with pytest.raises(UsageError, match="missing client certificate"):
        HostCerts.read(tmp_path)


def test_a_loopback_registry_is_insecure_without_asking_the_engine(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The engine always lists 127.0.0.0/8 as insecure: a plain-HTTP loopback registry is
    reached over HTTP without an engine connection (a `docker info` per client otherwise)."""
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    from shipit.adapters import oci

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args: object) -> None:
            pass

    asked: list[object] = []
    monkeypatch.setattr(oci, "_engine_registry_config", lambda env: asked.append(env) or {})
    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        client = oci.RegistryClient(f"127.0.0.1:{server.server_port}", None, timeout=5, env={})
        client.ping()
    finally:
        server.shutdown()
        server.server_close()
    assert client.scheme == "http"
    assert asked == []


def test_clients_share_the_tls_context_of_the_same_files(tmp_path: Path) -> None:
    from tests.support.trust import make_pki

    pki = make_pki(tmp_path / "pki", ())
    host = tmp_path / "certs.d" / "reg.example:5000"
    host.mkdir(parents=True)
    (host / "ca.crt").write_bytes(pki.ca.read_bytes())
    certs = HostCerts.read(host)
    first = ssl_context({}, certs)
    assert ssl_context({}, certs) is first  # a second client loads nothing again
    assert first.cert_store_stats()["x509_ca"] > 1  # the system's CAs and certs.d's
    assert ssl_context({}, HostCerts()) is not first
    bundle = {"SSL_CERT_FILE": str(pki.ca)}
    assert ssl_context(bundle, HostCerts()).cert_store_stats()["x509_ca"] == 1
    (host / "ca.crt").write_bytes(pki.ca.read_bytes() + b"\n")  # changed: loaded afresh
    assert ssl_context({}, HostCerts.read(host)) is not first
