"""What every command shares: the environment, the reporter, running a body, CI outputs."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer

from shipit.errors import ExitCode, Interrupted, ShipitError

SECRET_ENV_VARS = (
    "DOCKERHUB_TOKEN",
    "SHIPIT_REGISTRY_PASSWORD",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
)


def read_env() -> dict[str, str]:
    return dict(os.environ)


def make_reporter(*, json: bool = False, verbose: bool = False, quiet: bool = False) -> Any:
    from shipit.output.reporter import OutputMode, Reporter

    env = read_env()
    mode = OutputMode.detect(env, quiet=quiet, verbose=verbose, json=json)
    reporter = Reporter(mode)
    # Secrets that arrive through the environment are masked before anything is printed.
    for var in SECRET_ENV_VARS:
        if env.get(var):
            reporter.mask(env[var])
    return reporter


def run_body(reporter: Any, body: Callable[[], None]) -> None:
    """Run a command body; expected failures become one message and their exit code.

    With --json, a failure still prints exactly one object on stdout: the error (message,
    hint, exit code, kind) plus whatever did complete.
    """
    try:
        body()
    except ShipitError as exc:
        reporter.error(exc)
        if reporter.mode.json:
            reporter.emit_json(exc.as_json())
        raise typer.Exit(exc.exit_code) from None
    except KeyboardInterrupt:
        interrupted = Interrupted("interrupted: stopped before finishing")
        reporter.error(interrupted)
        if reporter.mode.json:
            reporter.emit_json(interrupted.as_json())
        raise typer.Exit(ExitCode.INTERRUPTED) from None
    except Exception as exc:
        # A bug: its traceback goes to stderr, and --json still answers with one object.
        if reporter.mode.json:
            internal = ShipitError(f"internal error: {type(exc).__name__}")
            internal.kind = "internal"
            reporter.emit_json(internal.as_json())
        raise


def write_ci_outputs(
    env: dict[str, str],
    image: str,
    tags: list[str],
    pushed: list[Any],
    *,
    image_id: str | None = None,
    iidfile: str | None = None,
    metadata_file: str | None = None,
) -> None:
    """--iidfile, --metadata-file and, under GitHub Actions, step outputs and a summary table."""
    from shipit.adapters.ci import build_metadata, write_github_outputs

    landed = [p for p in pushed if p.digest and p.status not in ("cache", "planned")]
    metadata = build_metadata(image_id, tags, [(p.reference, p.digest) for p in landed])
    _write_file(iidfile, image_id or "", "--iidfile")
    if metadata_file:
        import json

        _write_file(metadata_file, json.dumps(metadata, indent=2) + "\n", "--metadata-file")
    if env.get("GITHUB_ACTIONS") != "true":
        return
    write_github_outputs(
        env,
        image=image,
        digest=landed[0].digest if landed else None,
        tags=list(dict.fromkeys(p.reference for p in landed)) or tags,
        references=[f"{p.reference}@{p.digest}" for p in landed],
        rows=[(p.registry, p.reference, p.digest) for p in landed]
        or [("local", t, "") for t in tags],
        image_id=image_id,
        metadata=metadata,
    )


def _write_file(path: str | None, text: str, option: str) -> None:
    if not path:
        return
    from shipit.errors import UsageError

    try:
        Path(path).write_text(text, encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"{option} {path}: cannot write it ({exc.strerror})") from exc


def build_options(**values: Any) -> Any:
    """BuildOptions from the build options both `build` and `release` declare."""
    from shipit.services.build import BuildOptions, ImageOptions

    return BuildOptions(
        context=values["context"],
        dockerfile=values["file"],
        image=ImageOptions(
            name=values["name"],
            tags=values["tag"] or (),
            version=values["version"],
            latest=values["latest"],
        ),
        build_args=values["build_arg"] or (),
        labels=values["label"] or (),
        target=values["target"],
        platform=values["platform"],
        pull=values["pull"],
        no_cache=values["no_cache"],
        network=values["network"],
        cache_from=values["cache_from"] or (),
        secrets=values.get("secret") or (),
        ssh=values.get("ssh") or (),
    )


def registry_options(
    config_registry: dict[str, Any],
    *,
    registry: list[str] | None,
    region: str | None,
    profile: str | None,
    registry_id: str | None,
    repository: str | None,
    create_repo: bool | None,
    immutable_tags: bool | None,
    kms_key: str | None,
    namespace: str | None,
    username: str | None,
    password_stdin: bool,
    reporter: Any = None,
    **hygiene: Any,
) -> Any:
    from shipit.errors import UsageError
    from shipit.services.registries import RegistryOptions

    password = None
    username = username or config_registry.get("username")
    if password_stdin:
        # Without --username, each registry's own variable names the user
        # (SHIPIT_REGISTRY_USERNAME, DOCKERHUB_USERNAME): see resolve_credentials.
        password = sys.stdin.readline().rstrip("\r\n")
        if not password:
            raise UsageError("--password-stdin: nothing was read from stdin")
        if reporter is not None:
            reporter.mask(password)  # before anything else is printed
    c = config_registry

    def pick(value: Any, key: str, default: Any = None) -> Any:
        return value if value is not None else c.get(key, default)

    return RegistryOptions(
        registries=tuple(registry or c.get("registries") or ()),
        region=pick(region, "region"),
        profile=pick(profile, "profile"),
        registry_id=pick(registry_id, "registry_id"),
        repository=pick(repository, "repository"),
        create_repo=pick(create_repo, "create_repo", True),
        immutable_tags=pick(immutable_tags, "immutable_tags", False),
        kms_key=pick(kms_key, "kms_key"),
        namespace=pick(namespace, "namespace"),
        username=pick(username, "username"),
        password=password,
        **hygiene,
    )


def select_reference(
    name: str | None, tag: list[str] | None, version: str | None, latest: bool | None
) -> tuple[str, str]:
    """The image `push` would push, as (name, NAME:FIRST-TAG)."""
    from shipit.config import load_config
    from shipit.services.build import ImageOptions, resolve_context, select_image

    cwd = Path.cwd()
    config = load_config(cwd)
    options = ImageOptions(name=name, tags=tag or (), version=version, latest=latest)
    selection = select_image(options, config, resolve_context(None, config, cwd), env=read_env())
    return selection.name, selection.references[0]


def connect_engine() -> Any:
    from shipit.cli.wiring import clients

    return clients().engine(read_env())
