"""The command line: declare options, resolve settings, build clients, call one function.

Heavy libraries (docker-py, boto3) are imported inside the commands that use them, so
`shipit --version` and `shipit --help` stay fast.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Annotated, Any, NoReturn

import typer

from shipit import __version__
from shipit.errors import ExitCode, Interrupted, ShipitError

app = typer.Typer(
    name="shipit",
    help="Build, tag, push and verify container images (Amazon ECR, Docker Hub, any OCI registry).",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)

# ---------------------------------------------------------------- shared options

NameOpt = Annotated[
    str | None, typer.Option("--name", envvar="SHIPIT_NAME", help="Image name (repository).")
]
TagOpt = Annotated[
    list[str] | None,
    typer.Option("--tag", "-t", envvar="SHIPIT_TAGS", help="Extra tag (repeatable)."),
]
VersionOpt = Annotated[
    str | None,
    typer.Option(
        "--version", envvar="SHIPIT_VERSION", help="Release version: 1.2.3 adds 1.2.3, 1.2 and 1."
    ),
]
LatestOpt = Annotated[
    bool | None,
    typer.Option("--latest/--no-latest", envvar="SHIPIT_LATEST", help="Add the 'latest' tag."),
]
JsonOpt = Annotated[
    bool, typer.Option("--json", help="Print one JSON object on stdout; everything else on stderr.")
]
VerboseOpt = Annotated[bool, typer.Option("--verbose", "-v", help="More detail.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="Only errors and results.")]


def _version_callback(value: bool) -> None:
    if value:
        print(f"shipit {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version_callback, is_eager=True, help="Show the version and exit."
        ),
    ] = False,
) -> None:
    """Build, tag, push and verify container images."""


# ---------------------------------------------------------------- plumbing


def _env() -> dict[str, str]:
    return dict(os.environ)


def _reporter(*, json: bool = False, verbose: bool = False, quiet: bool = False) -> Any:
    from shipit.reporter import OutputMode, Reporter

    mode = OutputMode.detect(_env(), quiet=quiet, verbose=verbose, json=json)
    return Reporter(mode)


def _run(reporter: Any, body: Callable[[], None]) -> None:
    """Run a command body; expected failures become one message and their exit code."""
    try:
        body()
    except ShipitError as exc:
        reporter.error(exc)
        raise typer.Exit(exc.exit_code) from None
    except KeyboardInterrupt:
        reporter.error(Interrupted("interrupted: stopped before finishing"))
        raise typer.Exit(ExitCode.INTERRUPTED) from None


def _raise_interrupt(signum: int, frame: FrameType | None) -> NoReturn:
    raise KeyboardInterrupt


# ---------------------------------------------------------------- build


@app.command()
def build(
    context: Annotated[
        str | None,
        typer.Argument(envvar="SHIPIT_CONTEXT", help="Build context directory (default: config, or '.')."),
    ] = None,
    file: Annotated[
        str | None,
        typer.Option("--file", "-f", envvar="SHIPIT_DOCKERFILE", help="Dockerfile path."),
    ] = None,
    name: NameOpt = None,
    tag: TagOpt = None,
    version: VersionOpt = None,
    latest: LatestOpt = None,
    build_arg: Annotated[
        list[str] | None, typer.Option("--build-arg", help="KEY=VALUE build argument (repeatable).")
    ] = None,
    target: Annotated[str | None, typer.Option("--target", help="Build this stage.")] = None,
    platform: Annotated[
        str | None, typer.Option("--platform", envvar="SHIPIT_PLATFORM", help="e.g. linux/amd64.")
    ] = None,
    pull: Annotated[bool, typer.Option("--pull", help="Always try to pull newer base images.")] = False,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Do not use the build cache.")] = False,
    label: Annotated[
        list[str] | None, typer.Option("--label", help="KEY=VALUE image label (repeatable).")
    ] = None,
    network: Annotated[
        str | None, typer.Option("--network", help="Network for RUN steps.")
    ] = None,
    cache_from: Annotated[
        list[str] | None, typer.Option("--cache-from", help="Image to use as a cache source (repeatable).")
    ] = None,
    json: JsonOpt = False,
    verbose: VerboseOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Build the image and tag it by the tag rules (latest, sha-<head>, version tags, --tag)."""
    reporter = _reporter(json=json, verbose=verbose, quiet=quiet)

    def body() -> None:
        from shipit.builder import BuildOptions, ImageOptions, build_image, resolve_build_settings
        from shipit.config import load_config
        from shipit.engine import Engine

        env = _env()
        cwd = Path.cwd()
        options = BuildOptions(
            context=context,
            dockerfile=file,
            image=ImageOptions(name=name, tags=tag or (), version=version, latest=latest),
            build_args=build_arg or (),
            labels=label or (),
            target=target,
            platform=platform,
            pull=pull,
            no_cache=no_cache,
            network=network,
            cache_from=cache_from or (),
        )
        settings = resolve_build_settings(options, load_config(cwd), cwd, env)
        engine = Engine.connect(env)
        result = build_image(settings, engine, reporter)
        if json:
            reporter.emit_json(result.as_json())
        else:
            reporter.success(
                f"built {result.name} {result.image_id[:19]} ({result.size_bytes / 1e6:.1f} MB)"
            )
            for ref in result.as_json()["tags"]:  # type: ignore[union-attr]
                reporter.emit(str(ref))

    _run(reporter, body)


def main() -> None:
    """Console-script entry point."""
    signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        app()
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        sys.exit(ExitCode.INTERRUPTED)
