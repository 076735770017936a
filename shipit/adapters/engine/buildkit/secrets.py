"""Build secrets served in a session: ``moby.buildkit.secrets.v1.Secrets/GetSecret``.

Mirrors moby/buildkit ``session/secrets/secretsprovider``: each secret has an id and a source
(a file or an environment variable); an id nobody gave answers NOT_FOUND, which BuildKit turns
into "secret ID not found" for a ``required=true`` mount and into a skipped mount otherwise.
Values are read once, when the provider is built, so a missing source fails before the engine is
called; they never appear in a message, a log line or a repr.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from shipit.adapters.engine.buildkit.wire import field_bytes, iter_fields
from shipit.errors import UsageError

if TYPE_CHECKING:
    import grpc

GET_SECRET = "/moby.buildkit.secrets.v1.Secrets/GetSecret"
MAX_SECRET_SIZE = 500 * 1024  # secretsprovider.MaxSecretSize


class SecretSourceError(UsageError):
    """A build secret's source is missing, unreadable, too big or badly written."""


@dataclass(frozen=True)
class SecretSource:
    """One ``--secret``: ``id`` plus a file ``path`` or an environment variable ``env``."""

    id: str
    path: str | None = None
    env: str | None = None

    @classmethod
    def parse(cls, spec: str, environ: Mapping[str, str]) -> SecretSource:
        """Docker's syntax: ``id=ID[,src=PATH|,source=PATH|,env=VAR]`` (``type=file|env``
        allowed). With neither source, like docker, an environment variable named ID wins over
        a file named ID."""
        values: dict[str, str] = {}
        for part in spec.split(","):
            key, sep, value = part.partition("=")
            key = key.strip().lower()
            if not sep or key not in ("id", "src", "source", "env", "type"):
                raise SecretSourceError(
                    f"invalid --secret {spec!r}: expected id=ID[,src=PATH|,env=VAR]"
                )
            values["src" if key == "source" else key] = value
        kind = values.pop("type", "")
        if kind not in ("", "file", "env"):
            raise SecretSourceError(f"invalid --secret {spec!r}: type must be file or env")
        secret_id = values.get("id", "")
        if not secret_id:
            raise SecretSourceError(f"invalid --secret {spec!r}: id=ID is required")
        if "src" in values and "env" in values:
            raise SecretSourceError(f"invalid --secret {spec!r}: give src= or env=, not both")
        src = values.get("src") or None
        if kind == "env" and src is not None:
            return cls(secret_id, env=src)
        if src is not None or values.get("env"):
            return cls(secret_id, path=src, env=values.get("env") or None)
        if secret_id in environ:
            return cls(secret_id, env=secret_id)
        return cls(secret_id, path=secret_id)

    def read(self, environ: Mapping[str, str]) -> bytes:
        """The secret's bytes, or SecretSourceError naming the source (never the value)."""
        if self.env is not None:
            if self.env not in environ:
                raise SecretSourceError(
                    f"secret '{self.id}': environment variable {self.env} is not set"
                )
            data = environ[self.env].encode()
        else:
            assert self.path is not None
            data = _read_file(self.id, self.path)
        if len(data) > MAX_SECRET_SIZE:
            raise SecretSourceError(
                f"secret '{self.id}' is {len(data)} bytes; BuildKit takes at most {MAX_SECRET_SIZE}"
            )
        return data


def _read_file(secret_id: str, path: str) -> bytes:
    try:
        size = os.stat(path).st_size
        if size > MAX_SECRET_SIZE:
            raise SecretSourceError(
                f"secret '{secret_id}': {path} is {size} bytes; BuildKit takes at most "
                f"{MAX_SECRET_SIZE}"
            )
        with open(path, "rb") as handle:
            return handle.read(MAX_SECRET_SIZE + 1)
    except FileNotFoundError as exc:
        raise SecretSourceError(f"secret '{secret_id}': file {path} does not exist") from exc
    except IsADirectoryError as exc:
        raise SecretSourceError(f"secret '{secret_id}': {path} is a directory") from exc
    except OSError as exc:
        raise SecretSourceError(
            f"secret '{secret_id}': cannot read {path} ({exc.strerror or exc})"
        ) from exc


def decode_secret_id(request: bytes) -> str:
    """GetSecretRequest.ID (field 1); annotations (field 2) are not needed."""
    for number, _, value in iter_fields(request):
        if number == 1 and isinstance(value, bytes):
            return value.decode("utf-8", "replace")
    return ""


class SecretsProvider:
    """Serves GetSecret from values loaded up front."""

    def __init__(self, values: Mapping[str, bytes]):
        self._values = dict(values)

    @classmethod
    def from_sources(
        cls, sources: Iterable[SecretSource], environ: Mapping[str, str]
    ) -> SecretsProvider:
        """Read every source now; a duplicate id or a bad source raises SecretSourceError."""
        values: dict[str, bytes] = {}
        for source in sources:
            if source.id in values:
                raise SecretSourceError(f"secret '{source.id}' is given twice")
            values[source.id] = source.read(environ)
        return cls(values)

    @property
    def ids(self) -> list[str]:
        return sorted(self._values)

    def __repr__(self) -> str:
        return f"SecretsProvider(ids={self.ids})"

    def get_secret(self, request: bytes, context: Any) -> bytes:
        import grpc

        secret_id = decode_secret_id(request)
        data = self._values.get(secret_id)
        if data is None:
            # BuildKit maps NOT_FOUND to ErrNotFound: optional mounts are skipped.
            context.abort(grpc.StatusCode.NOT_FOUND, f"secret {secret_id} not found")
        return field_bytes(1, data or b"")

    def handlers(self) -> dict[str, grpc.RpcMethodHandler]:
        import grpc

        return {GET_SECRET: grpc.unary_unary_rpc_method_handler(self.get_secret)}
