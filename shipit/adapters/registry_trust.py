"""How shipit's registry HTTP client trusts a registry: from the same sources the engine uses.

- Certificates: the system's CAs (or the bundle named by ``REQUESTS_CA_BUNDLE``,
  ``CURL_CA_BUNDLE`` or ``SSL_CERT_FILE``), plus ``/etc/docker/certs.d/HOST/*.crt``; a client
  certificate from ``certs.d/HOST/*.cert`` with its ``*.key`` (moby
  ``registry.ReadCertsDirectory``).
- Insecure registries: the engine's ``docker info`` RegistryConfig. A host is insecure when
  ``IndexConfigs[HOST].Secure`` is false, or, without such an entry, when one of its IP
  addresses is in ``InsecureRegistryCIDRs`` (127.0.0.0/8 by default; moby
  ``registry.isSecureIndex``). The engine then tries HTTPS without verification, then plain
  HTTP: so does the client.
- Proxies: ``HTTPS_PROXY``/``HTTP_PROXY``/``ALL_PROXY`` and ``NO_PROXY`` (either case), never
  for loopback addresses and ``localhost`` (as Go's net/http, which the engine uses).
"""

from __future__ import annotations

import ipaddress
import os
import socket
import ssl
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shipit.errors import UsageError

CERTS_DIR = Path("/etc/docker/certs.d")
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str], list[str]]


def split_host(host: str) -> str:
    """The host name or IP of HOST[:PORT] ([v6]:port too), without the port."""
    if host.startswith("["):
        return host[1 : host.index("]")]
    if host.count(":") == 1:
        return host.rsplit(":", 1)[0]
    return host


def is_loopback(host: str) -> bool:
    name = split_host(host)
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def resolve(name: str) -> list[str]:
    """The IP addresses of a host name (an IP is its own); [] when it does not resolve."""
    try:
        return sorted({str(info[4][0]) for info in socket.getaddrinfo(name, None)})
    except (OSError, UnicodeError):
        return []


@dataclass(frozen=True)
class EngineRegistryConfig:
    """The engine's insecure-registry settings, from `docker info`'s RegistryConfig."""

    secure: Mapping[str, bool] = field(default_factory=dict)  # IndexConfigs: name -> Secure
    insecure_cidrs: tuple[IPNetwork, ...] = ()

    @classmethod
    def from_info(cls, config: Mapping[str, Any] | None) -> EngineRegistryConfig:
        """Read RegistryConfig (IndexConfigs, InsecureRegistryCIDRs); unreadable parts are skipped."""
        config = config or {}
        secure: dict[str, bool] = {}
        for name, index in (config.get("IndexConfigs") or {}).items():
            if isinstance(index, Mapping) and isinstance(index.get("Secure"), bool):
                secure[str(name)] = bool(index["Secure"])
        cidrs: list[IPNetwork] = []
        for cidr in config.get("InsecureRegistryCIDRs") or ():
            try:
                cidrs.append(ipaddress.ip_network(str(cidr), strict=False))
            except ValueError:
                continue
        return cls(secure=secure, insecure_cidrs=tuple(cidrs))

    def is_insecure(self, host: str, resolver: Resolver = resolve) -> bool:
        """Whether the engine talks to `host` (HOST[:PORT]) without verifying TLS."""
        if host in self.secure:
            return not self.secure[host]
        addresses: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = []
        for text in resolver(split_host(host)):
            try:
                addresses.append(ipaddress.ip_address(text))
            except ValueError:
                continue
        return any(
            address in network
            for address in addresses
            for network in self.insecure_cidrs
            if address.version == network.version
        )


def _env(env: Mapping[str, str], name: str) -> str:
    return env.get(name.lower()) or env.get(name.upper()) or ""


def _no_proxy_matches(name: str, no_proxy: str) -> bool:
    if no_proxy.strip() == "*":
        return True
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        address = None
    for entry in (e.strip().lower() for e in no_proxy.split(",")):
        if not entry:
            continue
        if address is not None and "/" in entry:
            try:
                if address in ipaddress.ip_network(entry, strict=False):
                    return True
            except ValueError:
                continue
        entry = split_host(entry).lstrip("*")
        if name == entry.lstrip(".") or (entry and name.endswith("." + entry.lstrip("."))):
            return True
    return False


def proxy_for(url: str, env: Mapping[str, str]) -> str | None:
    """The proxy a request to `url` goes through, from the environment; None for a direct one."""
    scheme, _, rest = url.partition("://")
    host = rest.split("/", 1)[0].rsplit("@", 1)[-1].lower()
    name = split_host(host)
    if is_loopback(host) or _no_proxy_matches(name, _env(env, "no_proxy")):
        return None
    proxy = _env(env, f"{scheme}_proxy") or _env(env, "all_proxy")
    return proxy or None


def _ca_bundle(env: Mapping[str, str]) -> str | None:
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE"):
        if env.get(name):
            return env[name]
    return None


@dataclass(frozen=True)
class HostCerts:
    """What /etc/docker/certs.d/HOST/ holds: CA files and client certificate pairs."""

    cas: tuple[Path, ...] = ()
    client_pairs: tuple[tuple[Path, Path], ...] = ()

    @classmethod
    def read(cls, directory: Path) -> HostCerts:
        """Like moby's ReadCertsDirectory: *.crt are CAs; each *.cert needs its *.key."""
        if not directory.is_dir():
            return cls()
        cas: list[Path] = []
        pairs: list[tuple[Path, Path]] = []
        for path in sorted(directory.iterdir()):
            if path.suffix == ".crt":
                cas.append(path)
            elif path.suffix == ".cert":
                key = path.with_suffix(".key")
                if not key.is_file():
                    raise UsageError(
                        f"missing key {key.name} for client certificate {path}",
                        hint="CA certificates must use the extension .crt",
                    )
                pairs.append((path, key))
            elif path.suffix == ".key" and not path.with_suffix(".cert").is_file():
                raise UsageError(f"missing client certificate {path.stem}.cert for key {path}")
        return cls(tuple(cas), tuple(pairs))


def ssl_context(env: Mapping[str, str], certs: HostCerts) -> ssl.SSLContext:
    """A verifying TLS context: the base CAs, certs.d's CAs and client certificate.

    Loading CAs costs tens of milliseconds of CPU, so registry clients of one process share the
    context of the same files (a file that changed since gets a new one)."""
    bundle = _ca_bundle(env)
    key = tuple(
        _file_key(path)
        for path in (bundle, *certs.cas, *(p for pair in certs.client_pairs for p in pair))
    )
    with _CONTEXTS_LOCK:
        context = _CONTEXTS.get(key)
        if context is None:
            context = _CONTEXTS[key] = _new_ssl_context(bundle, certs)
        return context


_CONTEXTS: dict[tuple[tuple[str, int, int], ...], ssl.SSLContext] = {}
_CONTEXTS_LOCK = threading.Lock()


def _file_key(path: str | Path | None) -> tuple[str, int, int]:
    if not path:
        return ("", 0, 0)
    try:
        found = os.stat(path)
    except OSError:
        return (str(path), 0, 0)
    return (str(path), found.st_mtime_ns, found.st_size)


def _new_ssl_context(bundle: str | None, certs: HostCerts) -> ssl.SSLContext:
    try:
        if bundle and os.path.isdir(bundle):
            context = ssl.create_default_context(capath=bundle)
        elif bundle:
            context = ssl.create_default_context(cafile=bundle)
        else:
            context = ssl.create_default_context()
            if not context.cert_store_stats()["x509_ca"]:
                _add_certifi(context)
        for ca in certs.cas:
            context.load_verify_locations(cafile=str(ca))
        for cert, key in certs.client_pairs:
            context.load_cert_chain(str(cert), str(key))
    except (OSError, ssl.SSLError) as exc:
        raise UsageError(
            f"cannot load the TLS certificates for the registry: {exc}",
            hint="check REQUESTS_CA_BUNDLE / SSL_CERT_FILE and /etc/docker/certs.d/",
        ) from exc
    return context


def _add_certifi(context: ssl.SSLContext) -> None:
    """requests' own CA bundle too, where the system has none (python.org builds on macOS)."""
    try:
        import certifi
    except ImportError:  # pragma: no cover - requests depends on certifi
        return
    context.load_verify_locations(cafile=certifi.where())


def client_cert(certs: HostCerts) -> tuple[str, str] | None:
    """The first client certificate pair, for the unverified (insecure) HTTPS attempt."""
    if not certs.client_pairs:
        return None
    cert, key = certs.client_pairs[0]
    return str(cert), str(key)
