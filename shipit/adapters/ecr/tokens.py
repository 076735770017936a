"""ECR login tokens and their on-disk cache (a cached token means no AWS call at all)."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _as_utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


@dataclass(frozen=True)
class EcrCredentials:
    """A docker login for one ECR registry. The password never appears in repr or str."""

    registry: str  # host only, e.g. "123456789012.dkr.ecr.us-east-1.amazonaws.com"
    username: str  # "AWS"
    password: str = field(repr=False)
    expires_at: datetime  # tz-aware UTC


def default_token_cache_path(env: Mapping[str, str]) -> Path:
    """$SHIPIT_CACHE_DIR, else $XDG_CACHE_HOME/shipit, else ~/.cache/shipit, + ecr-tokens.json."""
    if env.get("SHIPIT_CACHE_DIR"):
        base = Path(env["SHIPIT_CACHE_DIR"]).expanduser()
    elif env.get("XDG_CACHE_HOME"):
        base = Path(env["XDG_CACHE_HOME"]).expanduser() / "shipit"
    else:
        base = Path.home() / ".cache" / "shipit"
    return base / "ecr-tokens.json"


class TokenCache:
    """ECR login tokens cached on disk, user-only permissions, until shortly before expiresAt.

    The file is JSON ``{"version": 1, "entries": {key: {...}}}``. It is written atomically
    (a 0600 temp file in a 0700 directory, then ``os.replace``). A missing, corrupt or
    unreadable file is treated as empty, and a failed write only costs a fresh token next time.
    """

    VERSION = 1

    def __init__(
        self,
        path: Path,
        *,
        margin: timedelta = timedelta(minutes=10),
        now: Callable[[], datetime] = _utc_now,
    ) -> None:
        self.path = Path(path)
        self.margin = margin
        self._now = now

    def _load(self) -> dict[str, dict[str, str]]:
        try:
            raw = self.path.read_text(encoding="utf-8")
            data = json.loads(raw)
        except (OSError, ValueError):
            return {}
        if not isinstance(data, dict) or data.get("version") != self.VERSION:
            return {}
        entries = data.get("entries")
        if not isinstance(entries, dict):
            return {}
        return {k: v for k, v in entries.items() if isinstance(k, str) and isinstance(v, dict)}

    @staticmethod
    def _decode(entry: Mapping[str, Any]) -> EcrCredentials | None:
        try:
            expires_at = _as_utc(datetime.fromisoformat(str(entry["expires_at"])))
            registry, username, password = (
                entry["registry"],
                entry["username"],
                entry["password"],
            )
        except (KeyError, TypeError, ValueError):
            return None
        if not all(isinstance(v, str) and v for v in (registry, username, password)):
            return None
        return EcrCredentials(registry, username, password, expires_at)

    def _fresh(self, creds: EcrCredentials) -> bool:
        return creds.expires_at - self.margin > _as_utc(self._now())

    def get(self, key: str) -> EcrCredentials | None:
        entry = self._load().get(key)
        if entry is None:
            return None
        creds = self._decode(entry)
        if creds is None or not self._fresh(creds):
            return None
        return creds

    def put(self, key: str, creds: EcrCredentials) -> None:
        entries = self._load()
        # Drop entries that can no longer be used, so the file does not grow forever.
        for old_key in list(entries):
            decoded = self._decode(entries[old_key])
            if decoded is None or not self._fresh(decoded):
                del entries[old_key]
        entries[key] = {
            "registry": creds.registry,
            "username": creds.username,
            "password": creds.password,
            "expires_at": _as_utc(creds.expires_at).isoformat(),
        }
        self._write(entries)

    def invalidate(self, key: str) -> None:
        entries = self._load()
        if key in entries:
            del entries[key]
            self._write(entries)

    def _write(self, entries: Mapping[str, Any]) -> None:
        payload = json.dumps({"version": self.VERSION, "entries": entries}, sort_keys=True)
        directory = self.path.parent
        tmp = directory / f".{self.path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
        try:
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as handle:
                    handle.write(payload)
                    handle.flush()
                    os.fsync(handle.fileno())
                os.replace(tmp, self.path)
            finally:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
        except OSError as exc:
            # Best effort: the cache only saves a GetAuthorizationToken call.
            log.debug("could not write the ECR token cache %s: %s", self.path, exc.strerror)
