"""Plain types shared by every layer: engine events and results, registry credentials."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

# ---------------------------------------------------------------- events and results


@dataclass(frozen=True)
class BuildStep:
    """A new Dockerfile step started ('Step 3/9 : RUN pip install ...')."""

    text: str


@dataclass(frozen=True)
class BuildOutput:
    """A line of output from the current step."""

    text: str


@dataclass(frozen=True)
class PushProgress:
    """A layer's push status ('Pushing', 'Pushed', 'Layer already exists') with byte counts."""

    layer: str
    status: str
    current: int | None = None
    total: int | None = None


@dataclass(frozen=True)
class PushStatus:
    """A status line of a push that is not about one layer."""

    text: str


Event = BuildStep | BuildOutput | PushProgress | PushStatus
EventSink = Callable[[Event], None]


@dataclass(frozen=True)
class Auth:
    """Credentials for one registry. The password is never shown in repr or logs."""

    username: str
    password: str = field(repr=False)
    registry: str = ""

    def as_docker(self) -> dict[str, str]:
        return {
            "username": self.username,
            "password": self.password,
            "serveraddress": self.registry,
        }


@dataclass(frozen=True)
class ImageInfo:
    """What the engine knows about a local image."""

    id: str
    size: int
    repo_tags: tuple[str, ...]
    repo_digests: tuple[str, ...]
    labels: Mapping[str, str]
    user: str
    exposed_ports: tuple[str, ...]
    healthcheck: Mapping[str, Any] | None
    raw: Mapping[str, Any] = field(repr=False, default_factory=dict)


@dataclass(frozen=True)
class ImageSummary:
    """One entry of the engine's image list; `created` has sub-second precision."""

    id: str
    repo_tags: tuple[str, ...]
    created: float
    size: int
    labels: Mapping[str, str]


@dataclass(frozen=True)
class ContainerSummary:
    """One entry of the engine's container list (`docker ps -a`)."""

    id: str
    name: str
    image: str
    state: str
    labels: Mapping[str, str]


@dataclass(frozen=True)
class ContainerInfo:
    """What the engine knows about one container (`docker inspect`)."""

    id: str
    name: str
    image: str
    status: str
    running: bool
    exit_code: int | None
    # "starting", "healthy" or "unhealthy"; None when the container has no healthcheck.
    health: str | None
    # The output of the latest health probe, to explain an unhealthy container.
    health_output: str
    labels: Mapping[str, str]
    # "5000/tcp" -> (host ip, host port) of its first published binding.
    ports: Mapping[str, tuple[str, int]]


@dataclass(frozen=True)
class NetworkInfo:
    """A Docker network; `containers` holds the ids attached to it (filled by `network()`)."""

    id: str
    name: str
    driver: str
    labels: Mapping[str, str]
    containers: tuple[str, ...] = ()


@dataclass(frozen=True)
class ContainerSpec:
    """What `run_container` starts: one image on one network, its port published on loopback."""

    image: str
    name: str
    network: str
    container_port: int
    # None lets the engine choose a free host port.
    host_port: int | None = None
    host_ip: str = "127.0.0.1"
    environment: Mapping[str, str] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)
