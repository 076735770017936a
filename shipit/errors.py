"""The one error hierarchy: every expected failure says what failed, what to do, and its exit code."""

from __future__ import annotations

from enum import IntEnum
from typing import Any


class ExitCode(IntEnum):
    """Process exit codes, documented in the README's table (ints, so `sys.exit` takes them)."""

    OK = 0
    INTERNAL = 1
    USAGE = 2
    AUTH = 3
    ENGINE = 4
    BUILD = 5
    REGISTRY = 6
    SMOKE = 7
    INTERRUPTED = 130


class ShipitError(Exception):
    """Base of every expected failure. The message is one line and never holds a secret."""

    exit_code: int = ExitCode.INTERNAL
    kind: str = "error"

    def __init__(self, message: str, *, hint: str | None = None, details: list[str] | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint
        # Extra lines shown under the message (e.g. the last lines of a failing RUN step).
        self.details = details or []
        # What did complete before the failure, for --json (e.g. {"pushed": [...], "failed": [...]}).
        self.completed: dict[str, Any] = {}

    def __str__(self) -> str:
        return self.message

    def as_json(self) -> dict[str, Any]:
        """The --json object of a failed run: the error, plus whatever did complete."""
        error = {
            "message": self.message,
            "hint": self.hint,
            "exit_code": self.exit_code,
            "kind": self.kind,
        }
        return {"error": error, **self.completed}


class UsageError(ShipitError):
    """Invalid input: a bad tag, name, option value, context, Dockerfile or configuration."""

    exit_code = ExitCode.USAGE
    kind = "usage"


class ConfigError(UsageError):
    """The [tool.shipit] table or shipit.toml is malformed."""

    kind = "config"


class DockerfileError(UsageError):
    """The engine's Dockerfile parser rejected the Dockerfile: invalid input, nothing was built."""

    kind = "dockerfile"


class AuthError(ShipitError):
    """Credentials are missing, expired, wrong or not allowed to do what was asked."""

    exit_code = ExitCode.AUTH
    kind = "auth"


class EngineUnavailableError(ShipitError):
    """The Docker engine could not be reached."""

    exit_code = ExitCode.ENGINE
    kind = "engine"


class BuildError(ShipitError):
    """The image build failed (a failing step, a Dockerfile syntax error, a missing base image)."""

    exit_code = ExitCode.BUILD
    kind = "build"


class RegistryError(ShipitError):
    """A registry or push failure: unreachable, refused, throttled, timed out or inconsistent."""

    exit_code = ExitCode.REGISTRY

    def __init__(
        self,
        message: str,
        *,
        hint: str | None = None,
        details: list[str] | None = None,
        transient: bool = False,
        retry_after: float | None = None,
        kind: str = "registry",
    ):
        super().__init__(message, hint=hint, details=details)
        # Whether retrying the same operation may succeed (throttling, 5xx, resets, timeouts).
        self.transient = transient
        # Seconds the registry asked us to wait (Retry-After), when it said.
        self.retry_after = retry_after
        # A short class name for reports and tests: "throttled", "server", "timeout", ...
        self.kind = kind


class ImageNotFoundError(UsageError):
    """A tag that should exist locally does not: the image has not been built."""


class Interrupted(ShipitError):
    """The user or the CI system stopped the run (SIGINT or SIGTERM)."""

    exit_code = ExitCode.INTERRUPTED
    kind = "interrupted"
