"""The [tool.shipit] table of pyproject.toml (or shipit.toml): project defaults below options and SHIPIT_* variables."""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shipit.errors import ConfigError

_STR_KEYS = {"name", "context", "dockerfile", "target", "platform", "version", "builder"}
_BUILDERS = ("buildkit", "legacy")
_TABLE_KEYS = {"build_args", "labels", "registry"}
_LIST_KEYS = {"cache_from", "tags"}
_BOOL_KEYS = {"latest"}
_REGISTRY_STR_KEYS = {
    "region",
    "profile",
    "repository",
    "namespace",
    "registry_id",
    "kms_key",
    "username",
}
_REGISTRY_BOOL_KEYS = {"immutable_tags", "create_repo"}
_REGISTRY_LIST_KEYS = {"registries"}


@dataclass(frozen=True)
class FileConfig:
    """Values read from a config file; paths already resolved against the file's directory."""

    path: Path | None = None
    name: str | None = None
    context: Path | None = None
    dockerfile: Path | None = None
    target: str | None = None
    platform: str | None = None
    version: str | None = None
    latest: bool | None = None
    tags: tuple[str, ...] = ()
    cache_from: tuple[str, ...] = ()
    build_args: Mapping[str, str] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)
    registry: Mapping[str, Any] = field(default_factory=dict)
    # "buildkit" or "legacy"; None lets shipit pick BuildKit wherever the engine has it.
    builder: str | None = None


def find_config(start: Path) -> tuple[Path, dict[str, Any]] | None:
    """The nearest shipit.toml, or pyproject.toml with a [tool.shipit] table, at or above `start`."""
    for directory in (start, *start.parents):
        candidate = directory / "shipit.toml"
        if candidate.is_file():
            data = _read_toml(candidate)
            return candidate, data.get("tool", {}).get("shipit", data)
        candidate = directory / "pyproject.toml"
        if candidate.is_file():
            data = _read_toml(candidate)
            table = data.get("tool", {}).get("shipit")
            if table is not None:
                return candidate, table
    return None


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"malformed {path.name} ({path}): {exc}") from exc
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from exc


def _norm(key: str) -> str:
    return key.replace("-", "_")


def _string_map(value: Any, where: str) -> dict[str, str]:
    if not isinstance(value, dict):
        raise ConfigError(f'{where} must be a table of KEY = "value"')
    out: dict[str, str] = {}
    for key, item in value.items():
        if isinstance(item, bool) or not isinstance(item, str | int | float):
            raise ConfigError(f"{where}.{key} must be a string")
        out[str(key)] = str(item)
    return out


def _string_list(value: Any, where: str) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{where} must be a list of strings")
    return tuple(value)


def parse_config(path: Path, table: Any) -> FileConfig:
    """Validate a [tool.shipit] table; unknown keys and wrong types are ConfigErrors."""
    where = f"[tool.shipit] in {path}" if path.name == "pyproject.toml" else str(path)
    if not isinstance(table, dict):
        raise ConfigError(f"{where} must be a table")
    base = path.parent
    values: dict[str, Any] = {"path": path}
    for raw_key, value in table.items():
        key = _norm(raw_key)
        if key in _STR_KEYS:
            if not isinstance(value, str) or not value:
                raise ConfigError(f"{where}: '{raw_key}' must be a non-empty string")
            if key == "builder" and value not in _BUILDERS:
                raise ConfigError(f'{where}: builder must be "buildkit" or "legacy", not {value!r}')
            values[key] = (base / value) if key in {"context", "dockerfile"} else value
        elif key in _BOOL_KEYS:
            if not isinstance(value, bool):
                raise ConfigError(f"{where}: '{raw_key}' must be true or false")
            values[key] = value
        elif key in _LIST_KEYS:
            values[key] = _string_list(value, f"{where}: '{raw_key}'")
        elif key in {"build_args", "labels"}:
            values[key] = _string_map(value, f"{where}: '{raw_key}'")
        elif key == "registry":
            values[key] = _parse_registry(value, f"{where}: [registry]")
        else:
            known = sorted(_STR_KEYS | _TABLE_KEYS | _LIST_KEYS | _BOOL_KEYS)
            raise ConfigError(
                f"{where}: unknown key '{raw_key}' (known: {', '.join(k.replace('_', '-') for k in known)})"
            )
    return FileConfig(**values)


def _parse_registry(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(f"{where} must be a table")
    out: dict[str, Any] = {}
    for raw_key, item in value.items():
        key = _norm(raw_key)
        if key in _REGISTRY_STR_KEYS:
            if not isinstance(item, str):
                raise ConfigError(f"{where}: '{raw_key}' must be a string")
        elif key in _REGISTRY_BOOL_KEYS:
            if not isinstance(item, bool):
                raise ConfigError(f"{where}: '{raw_key}' must be true or false")
        elif key in _REGISTRY_LIST_KEYS:
            item = list(_string_list(item, f"{where}: '{raw_key}'"))
        else:
            known = sorted(_REGISTRY_STR_KEYS | _REGISTRY_BOOL_KEYS | _REGISTRY_LIST_KEYS)
            raise ConfigError(
                f"{where}: unknown key '{raw_key}' (known: {', '.join(k.replace('_', '-') for k in known)})"
            )
        out[key] = item
    return out


def load_config(start: Path) -> FileConfig:
    """The project's configuration, or an empty one when there is none."""
    found = find_config(start.resolve())
    if found is None:
        return FileConfig()
    return parse_config(*found)
