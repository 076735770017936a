"""What every command shares: the environment, the reporter, running a body, CI outputs."""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
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
    """The process environment (read in shipit.settings, the one place that reads it)."""
    from shipit.settings import environment

    return environment()


def make_reporter(
    *,
    json: bool = False,
    verbose: bool = False,
    quiet: bool = False,
    env: Mapping[str, str] | None = None,
) -> Any:
    from shipit.output.reporter import OutputMode, Reporter

    env = read_env() if env is None else env
    mode = OutputMode.detect(env, quiet=quiet, verbose=verbose, json=json)
    reporter = Reporter(mode)
    # Secrets that arrive through the environment are masked before anything is printed.
    for var in SECRET_ENV_VARS:
        if env.get(var):
            reporter.mask(env[var])
    return reporter


@dataclass(frozen=True)
class Invocation:
    """One command run: its reporter, its option values by parameter name, the environment."""

    reporter: Any
    options: SimpleNamespace
    env: dict[str, str]


def execute(body: Callable[[Invocation], None], values: Mapping[str, Any]) -> None:
    """Run a command's body with a reporter made from its --json/--verbose/--quiet.

    A command passes its own `locals()` as `values`: the environment is read once, here, and
    expected failures end as one message and their exit code (`run_body`).
    """
    env = read_env()
    reporter = make_reporter(
        json=bool(values.get("json")),
        verbose=bool(values.get("verbose")),
        quiet=bool(values.get("quiet")),
        env=env,
    )
    run = Invocation(reporter, SimpleNamespace(**values), env)
    run_body(reporter, lambda: body(run))


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
        # release --push-cache publishes NAME:buildcache: build it whatever the default.
        cache_stage=True if values.get("push_cache") else None,
    )


def registry_options(config_registry: Mapping[str, Any], options: Any, reporter: Any) -> Any:
    """RegistryOptions from a command's registry options (those it declares) and the config."""
    from shipit.services.registries import RegistryOptions
    from shipit.settings import registry_values

    given = {key: getattr(options, key, None) for key in REGISTRY_OPTION_NAMES}
    given["username"] = given["username"] or None
    hygiene = {key: getattr(options, key) for key in HYGIENE_OPTION_NAMES if hasattr(options, key)}
    password = None
    if getattr(options, "password_stdin", False):
        password = read_password(reporter)
    return RegistryOptions(**registry_values(config_registry, given), password=password, **hygiene)


REGISTRY_OPTION_NAMES = (
    "registry",
    "region",
    "profile",
    "registry_id",
    "repository",
    "create_repo",
    "immutable_tags",
    "kms_key",
    "namespace",
    "username",
)
HYGIENE_OPTION_NAMES = ("lifecycle_keep", "lifecycle_untagged_days", "scan_gate", "scan_timeout")


def read_password(reporter: Any) -> str:
    """--password-stdin: one line from stdin, masked before anything else is printed.

    Without --username, each registry's own variable names the user
    (SHIPIT_REGISTRY_USERNAME, DOCKERHUB_USERNAME): see resolve_credentials.
    """
    from shipit.errors import UsageError

    password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        raise UsageError("--password-stdin: nothing was read from stdin")
    reporter.mask(password)
    return password


def select_image_here(options: Any, config: Any, env: Mapping[str, str]) -> Any:
    """The image --name/--tag/--version/--latest select in the working directory's project."""
    from shipit.services.build import ImageOptions, select_image
    from shipit.settings import context_dir

    cwd = Path.cwd()
    image = ImageOptions(
        name=options.name, tags=options.tag or (), version=options.version, latest=options.latest
    )
    return select_image(image, config, context_dir(None, config, cwd), env=env)


def select_reference(options: Any, env: Mapping[str, str]) -> tuple[str, str]:
    """The image `push` would push, as (name, NAME:FIRST-TAG), from the image options a
    command declares (--name, --tag, --version, --latest; those it lacks count as not given)."""
    from shipit.config import load_config

    given = SimpleNamespace(
        **{key: getattr(options, key, None) for key in ("name", "tag", "version", "latest")}
    )
    selection = select_image_here(given, load_config(Path.cwd()), env)
    return selection.name, selection.references[0]


def connect_engine(env: Mapping[str, str]) -> Any:
    """The engine from the wiring, for the runtime commands (smoke, run, inspect, prune)."""
    from shipit.cli.wiring import clients

    return clients().engine(env)
