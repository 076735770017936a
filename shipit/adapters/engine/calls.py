"""The engine's request plumbing: docker-py and transport errors become shipit errors.

`EngineBase` holds the connected docker-py client; every request and stream of the engine
adapter goes through its `_call`, `_guard_stream` and `_runtime_call`.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime
from typing import Any

from shipit.adapters.classify import classify_registry_message
from shipit.adapters.engine.request_limits import url_too_long
from shipit.errors import (
    BuildError,
    DockerfileError,
    EngineUnavailableError,
    RegistryError,
    ShipitError,
    UsageError,
)
from shipit.model import NetworkInfo

DEFAULT_SOCKET = "unix:///var/run/docker.sock"


class EngineBase:
    """A docker-py client and the host it reaches; the error translation every request shares."""

    def __init__(self, api: Any, *, host: str = DEFAULT_SOCKET):
        self.api = api
        self.host = host

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
            # A 500 quoting a registry request (`Head "http://HOST/v2/...": ... connection
            # reset`) is the registry failing behind the engine: the caller classifies it.
            if (
                exc.status_code is not None
                and exc.status_code >= 500
                and "connect" in str(exc)
                and "/v2/" not in _api_message(exc)
            ):
                raise EngineUnavailableError(
                    f"the Docker engine at {self.host} failed: {exc}"
                ) from exc
            raise

    def _guard_stream(
        self, stream: Iterator[dict[str, Any]], error_cls: type[ShipitError]
    ) -> Iterator[dict[str, Any]]:
        """Re-raise transport and API errors met while reading a stream as shipit errors.

        A build the engine refuses for its URL size (414/431: build args and labels travel in
        the URL) is a usage error, however the refusal reached us.
        """
        try:
            yield from self._guarded(stream, error_cls)
        except Exception as exc:
            too_long = _url_refusal(exc) if error_cls is BuildError else None
            if too_long is not None:
                raise too_long from exc
            raise

    def _guarded(
        self, stream: Iterator[dict[str, Any]], error_cls: type[ShipitError]
    ) -> Iterator[dict[str, Any]]:
        import docker.errors
        import requests.exceptions
        import urllib3.exceptions

        try:
            yield from stream
        except urllib3.exceptions.ReadTimeoutError as exc:
            # docker-py reads streams straight from urllib3: a silent engine raises this.
            raise RegistryError(
                "the Docker engine made no progress within the stall timeout",
                hint="check the registry, or raise --stall-timeout",
                transient=True,
                kind="timeout",
            ) from exc
        except urllib3.exceptions.ProtocolError as exc:
            raise EngineUnavailableError(
                f"lost the connection to the Docker engine at {self.host} while streaming"
            ) from exc
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
        except (
            requests.exceptions.ConnectionError,
            requests.exceptions.ChunkedEncodingError,
        ) as exc:
            raise EngineUnavailableError(
                f"lost the connection to the Docker engine at {self.host} while streaming"
            ) from exc
        except json.JSONDecodeError as exc:
            raise error_cls("the Docker engine sent an unreadable stream") from exc

    def _runtime_call(self, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """`_call` for container and network requests: a refusal becomes a shipit error."""
        import docker.errors

        try:
            try:
                return self._call(fn, *args, **kwargs)
            except EngineUnavailableError as exc:
                # `_call` reads a 500 mentioning "connect" as an engine outage; for containers
                # that is usually a refusal ("failed programming external connectivity").
                if isinstance(exc.__cause__, docker.errors.APIError):
                    raise exc.__cause__ from None
                raise
        except docker.errors.APIError as exc:
            message = _api_message(exc)
            lowered = message.lower()
            if exc.status_code == 409 or "already in use" in lowered or "already exists" in lowered:
                raise UsageError(
                    f"cannot {what}: {message}", hint="choose another name, or remove the old one"
                ) from exc
            if "port is already allocated" in lowered or "address already in use" in lowered:
                raise UsageError(
                    f"cannot {what}: the host port is already in use",
                    hint="pick another --publish port, or omit it to let Docker choose",
                ) from exc
            if exc.status_code == 404:
                raise UsageError(f"cannot {what}: {message}") from exc
            raise ShipitError(f"the Docker engine refused to {what}: {message}") from exc

    @staticmethod
    def _network_info(data: Mapping[str, Any]) -> NetworkInfo:
        return NetworkInfo(
            id=str(data["Id"]),
            name=str(data.get("Name") or ""),
            driver=str(data.get("Driver") or ""),
            labels=dict(data.get("Labels") or {}),
            containers=tuple((data.get("Containers") or {}).keys()),
        )

    @staticmethod
    def _parse_timestamp(value: Any) -> float | None:
        """Docker's RFC 3339 timestamps (nanoseconds, 'Z') as epoch seconds; None if unreadable."""
        if not isinstance(value, str) or not value:
            return None
        text = value.replace("Z", "+00:00")
        # fromisoformat keeps at most microseconds: cut the fraction to six digits.
        head, dot, rest = text.partition(".")
        if dot:
            digits = "".join(itertools.takewhile(str.isdigit, rest))
            text = f"{head}.{digits[:6].ljust(6, '0')}{rest[len(digits) :]}"
        try:
            return datetime.fromisoformat(text).timestamp()
        except ValueError:
            return None


def _url_refusal(exc: BaseException) -> UsageError | None:
    """The usage error for a 414/431 answer found anywhere in an exception's chain."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        response = getattr(current, "response", None)
        error = url_too_long(getattr(response, "status_code", None))
        if error is not None:
            return error
        current = current.__cause__ or current.__context__
    return None


def _api_message(exc: Any) -> str:
    explanation = getattr(exc, "explanation", None)
    return str(explanation or exc)


def _build_failure(message: str, step: str | None, tail: list[str]) -> ShipitError:
    lowered = message.lower()
    hint = None
    if "dockerfile parse error" in lowered or "unknown instruction" in lowered:
        # Invalid input (exit 2, like any other): the parser refused it before any step ran.
        return DockerfileError(
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
