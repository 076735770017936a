"""Where a setting's value comes from: option > SHIPIT_* environment > config file > default.

The one place that reads the process environment (`environment()`): the CLI reads it once per
command and passes the mapping down, so services and adapters see the same values and tests
can pass their own. Typer applies an option's SHIPIT_* variable itself (`envvar=`), so an
option's value arriving here already means "the option, else its variable"; these functions
add the config file and the default, in that order.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from shipit.config import FileConfig
from shipit.errors import UsageError

# The registry settings `[tool.shipit.registry]` may give, each with its default.
REGISTRY_DEFAULTS: dict[str, Any] = {
    "region": None,
    "profile": None,
    "registry_id": None,
    "repository": None,
    "create_repo": True,
    "immutable_tags": False,
    "kms_key": None,
    "namespace": None,
    "username": None,
}


def environment() -> dict[str, str]:
    """A copy of the process environment: the one read of os.environ."""
    return dict(os.environ)


def pick(option: Any, config: Mapping[str, Any], key: str, default: Any = None) -> Any:
    """The option (or its variable) when given, else the config file's value, else `default`."""
    return option if option is not None else config.get(key, default)


def registry_values(config: Mapping[str, Any], given: Mapping[str, Any]) -> dict[str, Any]:
    """The registry settings from the options `given` (None: not given) and the config file."""
    values = {
        key: pick(given.get(key), config, key, default)
        for key, default in REGISTRY_DEFAULTS.items()
    }
    values["registries"] = tuple(given.get("registry") or config.get("registries") or ())
    return values


def context_dir(option: str | None, config: FileConfig, cwd: Path) -> Path:
    """The build context: option (or SHIPIT_CONTEXT) > config > the working directory."""
    if option:
        return (cwd / option).resolve()
    if config.context is not None:
        return config.context.resolve()
    return cwd.resolve()


def dockerfile_path(option: str | None, config: FileConfig, cwd: Path, context: Path) -> Path:
    """-f/--file (or SHIPIT_DOCKERFILE; relative to the working directory) > config >
    CONTEXT/Dockerfile; a usage error when that file does not exist."""
    if option:
        dockerfile = (cwd / option).resolve()
    elif config.dockerfile is not None:
        dockerfile = config.dockerfile.resolve()
    else:
        dockerfile = context / "Dockerfile"
    if not dockerfile.is_file():
        raise UsageError(
            f"Dockerfile '{dockerfile}' not found: pass -f/--file or add one to the context"
        )
    return dockerfile
