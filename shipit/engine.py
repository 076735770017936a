"""The one module that talks to the Docker engine through docker-py.

It turns docker-py's streams into typed events and results and its exceptions into shipit
errors. A build or push stream can carry an ``error`` chunk without docker-py raising, so every
stream is read to its end here and such chunks become exceptions.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from shipit.classify import classify_registry_message
from shipit.errors import (
    BuildError,
    EngineUnavailableError,
    ImageNotFoundError,
    RegistryError,
    ShipitError,
)

if TYPE_CHECKING:
    pass

DEFAULT_SOCKET = "unix:///var/run/docker.sock"


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


def _ignore(_: Event) -> None:
    return None


# ---------------------------------------------------------------- the engine


class Engine:
    """A connected Docker engine. Build one with `Engine.connect(env)`; tests pass a fake `api`."""

    def __init__(self, api: Any, *, host: str = DEFAULT_SOCKET):
        self.api = api
        self.host = host

    @classmethod
    def connect(cls, env: Mapping[str, str], *, timeout: float = 60.0) -> Engine:
        """Reach the engine `docker.from_env()` would (DOCKER_HOST, DOCKER_TLS_VERIFY, DOCKER_CERT_PATH)."""
        import docker
        import docker.errors

        host = env.get("DOCKER_HOST") or DEFAULT_SOCKET
        try:
            kwargs = docker.utils.kwargs_from_env(environment=dict(env))
            api = docker.APIClient(version="auto", timeout=int(timeout), **kwargs)
        except docker.errors.TLSParameterError as exc:
            raise EngineUnavailableError(
                f"Docker TLS settings are invalid for {host}: {exc}",
                hint="check DOCKER_CERT_PATH and DOCKER_TLS_VERIFY",
            ) from exc
        except docker.errors.DockerException as exc:
            raise EngineUnavailableError(
                f"cannot reach the Docker engine at {host}",
                hint="start Docker (or dockerd), or point DOCKER_HOST at a running engine",
            ) from exc
        return cls(api, host=host)

    # ------------------------------------------------------------ images

    def image(self, ref: str) -> ImageInfo | None:
        """Inspect a local image by id or reference; None when it does not exist."""
        import docker.errors

        try:
            data = self._call(self.api.inspect_image, ref)
        except docker.errors.ImageNotFound:
            return None
        except docker.errors.APIError as exc:
            if exc.status_code == 404:
                return None
            raise
        config = data.get("Config") or {}
        return ImageInfo(
            id=data["Id"],
            size=int(data.get("Size") or 0),
            repo_tags=tuple(data.get("RepoTags") or ()),
            repo_digests=tuple(data.get("RepoDigests") or ()),
            labels=dict(config.get("Labels") or {}),
            user=config.get("User") or "",
            exposed_ports=tuple(sorted((config.get("ExposedPorts") or {}).keys())),
            healthcheck=config.get("Healthcheck"),
            raw=data,
        )

    def require_image(self, ref: str) -> ImageInfo:
        """Inspect a local image, or tell the user to build it."""
        info = self.image(ref)
        if info is None:
            raise ImageNotFoundError(
                f"image '{ref}' does not exist locally: run 'shipit build' first"
            )
        return info

    def tag(self, image: str, repository: str, tag: str) -> None:
        """Point repository:tag at an image (like `docker tag`)."""
        self._call(self.api.tag, image, repository, tag, force=True)

    def remove_image(self, ref: str, *, force: bool = False) -> None:
        import docker.errors

        try:
            self._call(self.api.remove_image, ref, force=force, noprune=False)
        except docker.errors.ImageNotFound:
            return

    def pull(self, reference: str, auth: Auth | None = None) -> str | None:
        """Pull an image (reading the whole stream); return its id, or None if it is not there.

        Without `auth`, docker-py uses the logins in the Docker config.
        """
        import docker.errors

        repository, _, tag = reference.rpartition(":")
        if "/" in tag or not repository:
            repository, tag = reference, "latest"
        try:
            stream = self._call(
                self.api.pull,
                repository,
                tag=tag,
                stream=True,
                decode=True,
                auth_config=auth.as_docker() if auth else None,
            )
            for chunk in self._guard_stream(stream, RegistryError):
                if "error" in chunk or "errorDetail" in chunk:
                    return None
        except (docker.errors.APIError, RegistryError):
            return None
        info = self.image(reference)
        return info.id if info else None

    def history(self, ref: str) -> list[dict[str, Any]]:
        return list(self._call(self.api.history, ref))

    def version(self) -> dict[str, Any]:
        return dict(self._call(self.api.version))

    # ------------------------------------------------------------ build

    def build(
        self,
        fileobj: Any,
        *,
        dockerfile: str,
        tag: str,
        buildargs: Mapping[str, str],
        labels: Mapping[str, str],
        target: str | None = None,
        platform: str | None = None,
        pull: bool = False,
        nocache: bool = False,
        network_mode: str | None = None,
        cache_from: Sequence[str] = (),
        on_event: EventSink = _ignore,
    ) -> str:
        """Build an image from an uncompressed tar context; return its id ('sha256:...')."""
        kwargs: dict[str, Any] = {
            "fileobj": fileobj,
            "custom_context": True,
            "dockerfile": dockerfile,
            "tag": tag,
            "buildargs": dict(buildargs),
            "labels": dict(labels),
            "pull": pull,
            "nocache": nocache,
            "rm": True,
            "forcerm": True,
            "decode": True,
        }
        if target:
            kwargs["target"] = target
        if platform:
            kwargs["platform"] = platform
        if network_mode:
            kwargs["network_mode"] = network_mode
        if cache_from:
            kwargs["cache_from"] = list(cache_from)
        stream = self._call(self.api.build, **kwargs)
        return read_build_stream(self._guard_stream(stream, BuildError), on_event)

    # ------------------------------------------------------------ registries

    def push(
        self, repository: str, tag: str, auth: Auth | None, on_event: EventSink = _ignore
    ) -> str:
        """Push repository:tag, reading the whole stream; return the digest the registry reported."""
        auth_config = auth.as_docker() if auth else None
        stream = self._call(
            self.api.push, repository, tag=tag, stream=True, decode=True, auth_config=auth_config
        )
        return read_push_stream(self._guard_stream(stream, RegistryError), on_event)

    def distribution_digest(self, reference: str, auth: Auth | None) -> str:
        """The manifest digest the registry serves for a reference (engine's distribution inspect)."""
        import docker.errors

        try:
            data = self._call(
                self.api.inspect_distribution,
                reference,
                auth_config=auth.as_docker() if auth else None,
            )
        except docker.errors.APIError as exc:
            raise classify_registry_message(_api_message(exc), status=exc.status_code) from exc
        digest = (data.get("Descriptor") or {}).get("digest")
        if not digest:
            raise RegistryError(f"the registry returned no digest for {reference}")
        return str(digest)

    def login(self, auth: Auth) -> None:
        """Check credentials against a registry through the engine (`docker login` without storing)."""
        import docker.errors

        try:
            self._call(
                self.api.login,
                username=auth.username,
                password=auth.password,
                registry=auth.registry,
                reauth=True,
            )
        except docker.errors.APIError as exc:
            raise classify_registry_message(
                _api_message(exc), status=exc.status_code, registry=auth.registry
            ) from exc

    # ------------------------------------------------------------ plumbing

    def _call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Call docker-py, turning connection failures into EngineUnavailableError."""
        import docker.errors
        import requests.exceptions

        try:
            return fn(*args, **kwargs)
        except requests.exceptions.Timeout as exc:
            raise RegistryError(
                "no answer within the stall timeout (the engine or the registry behind it hangs)",
                hint="check the registry, or raise --stall-timeout",
                transient=True,
                kind="timeout",
            ) from exc
        except requests.exceptions.ConnectionError as exc:
            raise EngineUnavailableError(
                f"lost the connection to the Docker engine at {self.host}",
                hint="check that the engine is still running",
            ) from exc
        except docker.errors.NotFound:
            raise
        except docker.errors.APIError as exc:
            if exc.status_code is not None and exc.status_code >= 500 and "connect" in str(exc):
                raise EngineUnavailableError(
                    f"the Docker engine at {self.host} failed: {exc}"
                ) from exc
            raise

    def _guard_stream(
        self, stream: Iterator[dict[str, Any]], error_cls: type[ShipitError]
    ) -> Iterator[dict[str, Any]]:
        """Re-raise transport and API errors met while reading a stream as shipit errors."""
        import docker.errors
        import requests.exceptions

        try:
            yield from stream
        except docker.errors.APIError as exc:
            # A request the engine refuses outright answers without a stream (e.g. a
            # Dockerfile parse error is a 400); docker-py raises it on the first read.
            if error_cls is BuildError:
                raise _build_failure(_api_message(exc), None, []) from exc
            raise classify_registry_message(_api_message(exc), status=exc.status_code) from exc
        except requests.exceptions.ReadTimeout as exc:
            raise RegistryError(
                "the Docker engine made no progress within the stall timeout",
                transient=True,
                kind="timeout",
            ) from exc
        except requests.exceptions.ConnectionError as exc:
            raise EngineUnavailableError(
                f"lost the connection to the Docker engine at {self.host} while streaming"
            ) from exc
        except json.JSONDecodeError as exc:
            raise error_cls("the Docker engine sent an unreadable stream") from exc


def _api_message(exc: Any) -> str:
    explanation = getattr(exc, "explanation", None)
    return str(explanation or exc)


# ---------------------------------------------------------------- stream readers


def read_build_stream(chunks: Iterator[dict[str, Any]], on_event: EventSink = _ignore) -> str:
    """Consume a build stream; return the image id, or raise BuildError with the failing step."""
    image_id: str | None = None
    step: str | None = None
    tail: deque[str] = deque(maxlen=12)
    for chunk in chunks:
        if "error" in chunk or "errorDetail" in chunk:
            detail = chunk.get("errorDetail") or {}
            message = str(detail.get("message") or chunk.get("error") or "build failed").strip()
            raise _build_failure(message, step, list(tail))
        aux = chunk.get("aux")
        if isinstance(aux, dict) and aux.get("ID"):
            image_id = str(aux["ID"])
        text = chunk.get("stream")
        if isinstance(text, str):
            for line in text.splitlines():
                line = line.rstrip()
                if not line:
                    continue
                if line.startswith("Step ") and " : " in line:
                    step = line
                    tail.clear()
                    on_event(BuildStep(line))
                else:
                    if line.startswith("Successfully built ") and image_id is None:
                        image_id = line.split()[-1]
                    tail.append(line)
                    on_event(BuildOutput(line))
        status = chunk.get("status")
        if isinstance(status, str) and status:
            on_event(BuildOutput(status))
    if image_id is None:
        raise BuildError(
            "the build ended without producing an image",
            details=([step] if step else []) + list(tail),
        )
    return image_id


def _build_failure(message: str, step: str | None, tail: list[str]) -> BuildError:
    lowered = message.lower()
    hint = None
    if "dockerfile parse error" in lowered or "unknown instruction" in lowered:
        return BuildError(
            f"Dockerfile syntax error: {message}", hint="fix the Dockerfile line named above"
        )
    if (
        "pull access denied" in lowered
        or "manifest unknown" in lowered
        or ("not found" in lowered and step and " FROM " in step.upper())
    ):
        hint = "the base image is not available to the engine: build or load it, or pass --build-arg to choose another"
    elif "returned a non-zero code" in lowered:
        hint = "fix the failing step; its last output lines are shown above"
    where = f" at {step}" if step else ""
    return BuildError(f"build failed{where}: {message}", hint=hint, details=tail)


def read_push_stream(chunks: Iterator[dict[str, Any]], on_event: EventSink = _ignore) -> str:
    """Consume a push stream; return the pushed digest, or raise the classified registry error."""
    digest: str | None = None
    for chunk in chunks:
        if "error" in chunk or "errorDetail" in chunk:
            detail = chunk.get("errorDetail") or {}
            message = str(detail.get("message") or chunk.get("error") or "push failed").strip()
            raise classify_registry_message(message)
        aux = chunk.get("aux")
        if isinstance(aux, dict) and aux.get("Digest"):
            digest = str(aux["Digest"])
        status = chunk.get("status")
        if not isinstance(status, str):
            continue
        layer = chunk.get("id")
        if layer:
            detail = chunk.get("progressDetail") or {}
            on_event(
                PushProgress(
                    layer=str(layer),
                    status=status,
                    current=detail.get("current"),
                    total=detail.get("total"),
                )
            )
        else:
            on_event(PushStatus(status))
            if digest is None and "digest: sha256:" in status:
                digest = status.split("digest: ", 1)[1].split()[0]
    if digest is None:
        raise RegistryError("the push ended without the registry reporting a digest")
    return digest
