"""The Docker client config (~/.docker/config.json or $DOCKER_CONFIG): read and record logins.

Honours `credHelpers` (per registry) and `credsStore` (default helper) the way `docker login`
does, by running `docker-credential-<helper> get|store`. Plain entries are written as
base64 `auth` with user-only permissions.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from shipit.errors import AuthError, ConfigError

DOCKER_HUB_KEY = "https://index.docker.io/v1/"
_HUB_ALIASES = {"docker.io", "index.docker.io", "registry-1.docker.io", DOCKER_HUB_KEY}
_HUB_HOSTS = {"docker.io", "index.docker.io", "registry-1.docker.io"}


def config_path(env: Mapping[str, str]) -> Path:
    """$DOCKER_CONFIG/config.json, else ~/.docker/config.json."""
    base = env.get("DOCKER_CONFIG")
    if base:
        return Path(base) / "config.json"
    home = env.get("HOME") or str(Path.home())
    return Path(home) / ".docker" / "config.json"


def config_key(registry: str) -> str:
    """The key Docker uses for a registry in config.json (Docker Hub has a legacy URL)."""
    return DOCKER_HUB_KEY if registry in _HUB_ALIASES else registry


def _canonical(key: str) -> str:
    """A config key as a bare host, like docker-py's resolve_index_name: scheme and path
    dropped ('https://h:5000/v2/' -> 'h:5000'), every Docker Hub alias -> 'docker.io'."""
    host = key.split("://", 1)[-1].split("/", 1)[0].lower()
    return "docker.io" if host in _HUB_HOSTS else host


def _matching(mapping: Mapping[str, Any], registry: str) -> list[Any]:
    """Values of `mapping` whose key names `registry`: exact keys first, then any alias."""
    exact = dict.fromkeys((registry, config_key(registry)))
    found = [mapping[k] for k in exact if k in mapping]
    wanted = _canonical(registry)
    found += [v for k, v in mapping.items() if k not in exact and _canonical(k) == wanted]
    return found


def load(env: Mapping[str, str]) -> dict[str, Any]:
    """The parsed config, {} when there is none; a malformed file is a ConfigError."""
    path = config_path(env)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise ConfigError(f"cannot read the Docker config {path}: {exc.strerror}") from exc
    if not text.strip():
        return {}
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"the Docker config {path} is not valid JSON (line {exc.lineno})"
        ) from exc
    if not isinstance(data, dict):
        raise ConfigError(f"the Docker config {path} is not a JSON object")
    return data


def helper_for(config: Mapping[str, Any], registry: str) -> str | None:
    """The credential helper that owns `registry`, if any."""
    helpers = config.get("credHelpers") or {}
    named = _matching(helpers, registry) if isinstance(helpers, dict) else []
    if named:
        return str(named[0])
    store = config.get("credsStore")
    return str(store) if store else None


def lookup(registry: str, env: Mapping[str, str]) -> tuple[str, str] | None:
    """(username, secret) recorded for `registry`, or None."""
    config = load(env)
    helper = helper_for(config, registry)
    if helper:
        found = _helper_get(helper, config_key(registry), env)
        if found is not None:
            return found
    auths = config.get("auths") or {}
    for entry in _matching(auths, registry) if isinstance(auths, dict) else []:
        if not isinstance(entry, dict):
            continue
        if entry.get("auth"):
            try:
                user, _, secret = base64.b64decode(entry["auth"]).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                continue
            if user and secret:
                return user, secret
        if entry.get("username") and entry.get("password"):
            return str(entry["username"]), str(entry["password"])
        if entry.get("identitytoken"):
            return "<token>", str(entry["identitytoken"])
    return None


def store(registry: str, username: str, secret: str, env: Mapping[str, str]) -> str:
    """Record a login like `docker login`; return where it went (for a message without the secret)."""
    config = load(env)
    key = config_key(registry)
    helper = helper_for(config, registry)
    if helper:
        _helper_store(helper, key, username, secret, env)
        auths = config.setdefault("auths", {})
        if key not in auths:
            auths[key] = {}
            _write(config_path(env), config)
        return f"credential helper docker-credential-{helper}"
    auth = base64.b64encode(f"{username}:{secret}".encode()).decode()
    config.setdefault("auths", {})[key] = {"auth": auth}
    path = config_path(env)
    _write(path, config)
    return str(path)


def _write(path: Path, config: Mapping[str, Any]) -> None:
    """Atomic write with user-only permissions."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, tmp = tempfile.mkstemp(prefix=".config.", dir=path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(config, fh, indent="\t")
            os.chmod(tmp, 0o600)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise AuthError(
            f"cannot write the Docker config {path}: {exc.strerror}",
            hint="make the directory writable or point DOCKER_CONFIG at a writable one",
        ) from exc


def _run_helper(
    helper: str, action: str, payload: str, env: Mapping[str, str]
) -> subprocess.CompletedProcess[str]:
    program = f"docker-credential-{helper}"
    try:
        return subprocess.run(
            [program, action],
            input=payload,
            capture_output=True,
            text=True,
            timeout=30,
            env=dict(env),
            check=False,
        )
    except FileNotFoundError as exc:
        raise AuthError(
            f"the Docker config names credential helper '{helper}' but {program} is not installed",
            hint=f"install {program} or remove it from {config_path(env)}",
        ) from exc
    except subprocess.TimeoutExpired as exc:
        raise AuthError(f"credential helper {program} did not answer within 30 s") from exc


def _helper_get(helper: str, server: str, env: Mapping[str, str]) -> tuple[str, str] | None:
    proc = _run_helper(helper, "get", server, env)
    if proc.returncode != 0:
        return None  # "credentials not found in native keychain"
    try:
        data = json.loads(proc.stdout)
    except json.JSONDecodeError:
        return None
    user, secret = data.get("Username"), data.get("Secret")
    return (str(user), str(secret)) if user and secret else None


def _helper_store(
    helper: str, server: str, username: str, secret: str, env: Mapping[str, str]
) -> None:
    payload = json.dumps({"ServerURL": server, "Username": username, "Secret": secret})
    proc = _run_helper(helper, "store", payload, env)
    if proc.returncode != 0:
        # The helper's own words never contain the secret we passed on stdin, but be sure.
        said = (proc.stderr or proc.stdout).replace(secret, "***").strip().splitlines()
        raise AuthError(
            f"credential helper docker-credential-{helper} could not store the login: "
            f"{said[0] if said else 'exit ' + str(proc.returncode)}"
        )
