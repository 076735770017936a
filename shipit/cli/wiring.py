"""Where shipit's external clients are made: the one seam tests replace.

Every command takes its clients from `clients()`: the engine, the registry HTTP client, the
AWS clients (ECR and STS, IAM). Services never build a client; they receive one as an argument.
Tests put their fakes in with `using(Clients(...))` (see tests/conftest.py).

Nothing here imports docker-py, requests or boto3 until a client is made, so `shipit --help`
stays fast.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from shipit.adapters.engine.client import Engine
    from shipit.adapters.oci import RegistryClient


def connect_engine(env: Mapping[str, str], timeout: float = 60.0) -> Engine:
    """The Docker engine DOCKER_HOST (or the default socket) names."""
    from shipit.adapters.engine.client import Engine

    return Engine.connect(env, timeout=timeout)


def registry_client(host: str, auth: Any, *, timeout: float = 30.0) -> RegistryClient:
    """The OCI registry HTTP client for one registry host."""
    from shipit.adapters.oci import RegistryClient

    return RegistryClient(host, auth, timeout=timeout)


def aws_clients(region: str, profile: str | None) -> tuple[Any, Any]:
    """ECR and STS clients from the standard boto3 chain."""
    from shipit.adapters.ecr import make_clients

    return make_clients(region, profile)


def iam_client(profile: str | None) -> Any:
    """An IAM client from the standard boto3 chain."""
    from shipit.adapters.ecr import make_iam_client

    return make_iam_client(profile)


@dataclass
class Clients:
    """Factories for every external client a command needs."""

    engine: Callable[..., Engine] = connect_engine
    registry: Callable[..., RegistryClient] = registry_client
    aws: Callable[[str, str | None], tuple[Any, Any]] = aws_clients
    iam: Callable[[str | None], Any] = iam_client


_override: ContextVar[Clients | None] = ContextVar("shipit_clients", default=None)


def clients() -> Clients:
    """The clients commands use: the real ones, unless a caller put others in with `using`."""
    return _override.get() or Clients()


def active() -> Clients | None:
    """The clients `using` put in, if any."""
    return _override.get()


@contextmanager
def using(replacement: Clients) -> Iterator[Clients]:
    """Run the commands inside the block with `replacement`'s clients."""
    token = _override.set(replacement)
    try:
        yield replacement
    finally:
        _override.reset(token)
