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


@dataclass(frozen=True)
class Layer:
    """One history entry: the instruction that made it and the bytes it added."""

    size: int
    instruction: str


@dataclass(frozen=True)
class ImageReport:
    """What `shipit inspect` shows about one image; `as_json()` is its JSON form."""

    reference: str
    id: str
    size: int
    created: str
    user: str
    exposed_ports: tuple[str, ...]
    healthcheck: str | None
    labels: Mapping[str, str]
    # In build order: the base image's layers first, the last instruction last.
    layers: tuple[Layer, ...]

    def as_json(self) -> dict[str, Any]:
        return {
            "image": self.reference,
            "id": self.id,
            "size_bytes": self.size,
            "size_mb": round(self.size / 1e6, 1),
            "created": self.created,
            "user": self.user or None,
            "exposed_ports": list(self.exposed_ports),
            "healthcheck": self.healthcheck,
            "labels": dict(self.labels),
            "layers": [{"size_bytes": x.size, "instruction": x.instruction} for x in self.layers],
        }


@dataclass(frozen=True)
class Comparison:
    """Two images side by side; the difference is `image` minus `other`."""

    image: ImageReport
    other: ImageReport

    @property
    def difference_bytes(self) -> int:
        return self.image.size - self.other.size

    @property
    def difference_mb(self) -> float:
        return round(self.difference_bytes / 1e6, 2)

    @property
    def percent(self) -> float | None:
        """How much bigger (+) or smaller (-) `image` is than `other`, in percent."""
        if not self.other.size:
            return None
        return round(100.0 * self.difference_bytes / self.other.size, 2)

    def summary(self) -> str:
        a, b = self.image, self.other
        if self.difference_bytes == 0:
            return f"{a.reference} and {b.reference} are the same size ({megabytes(a.size)})"
        word = "smaller" if self.difference_bytes < 0 else "larger"
        pct = f", {abs(self.percent):.1f}% {word}" if self.percent is not None else ""
        return (
            f"{a.reference} is {abs(self.difference_mb):.2f} MB {word} than {b.reference} "
            f"({megabytes(a.size)} vs {megabytes(b.size)}{pct})"
        )

    def as_json(self) -> dict[str, Any]:
        return {
            "image": self.image.as_json(),
            "compare": self.other.as_json(),
            "difference_bytes": self.difference_bytes,
            "difference_mb": self.difference_mb,
            "difference_percent": self.percent,
        }


def megabytes(size: int) -> str:
    """A size in bytes as shipit prints it: "12.3 MB"."""
    return f"{size / 1e6:.1f} MB"
