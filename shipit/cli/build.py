"""`shipit build`: build the image and tag it by the tag rules."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from shipit.cli.app import app
from shipit.cli.common import Invocation, build_options, execute, write_ci_outputs
from shipit.cli.options import (
    BUILD_OPTIONS,
    CONTEXT,
    OUTPUT_OPTIONS,
    declare,
)

BUILD_READ_TIMEOUT = 3600.0


@app.command()
@declare(CONTEXT, *BUILD_OPTIONS, *OUTPUT_OPTIONS)
def build(**options: Any) -> None:
    """Build the image and tag it by the tag rules (latest, sha-<head>, version tags, --tag)."""
    execute(build_body, options)


def build_body(run: Invocation) -> None:
    """Resolve the build settings, build (one platform or several), report the result."""
    from shipit.cli.platforms import build_for_platforms
    from shipit.cli.wiring import clients
    from shipit.services.build import build_image

    o, reporter = run.options, run.reporter
    settings = build_settings(o, run.env)
    # A RUN step may print nothing for minutes (BuildKit sends no progress meanwhile):
    # the engine's read timeout for a build is an hour, not the stall timeout of a push.
    engine = clients().engine(run.env, timeout=BUILD_READ_TIMEOUT)
    if build_for_platforms(settings, engine, reporter, run.env) is not None:
        return  # several --platform values: built, reported
    result = build_image(settings, engine, reporter)
    write_ci_outputs(
        run.env,
        result.name,
        [f"{result.name}:{t}" for t in result.tags],
        [],
        image_id=result.image_id,
        iidfile=o.iidfile,
        metadata_file=o.metadata_file,
    )
    if o.json:
        reporter.emit_json(result.as_json())
        return
    reporter.success(
        f"built {result.name} {result.image_id[:19]} ({result.size_bytes / 1e6:.1f} MB)"
    )
    for built_tag in result.tags:
        reporter.emit(f"{result.name}:{built_tag}")


def build_settings(options: Any, env: dict[str, str], config: Any = None) -> Any:
    """The build's settings from the build options (`build` and `release` declare them)."""
    from shipit.config import load_config
    from shipit.services.build import resolve_build_settings

    cwd = Path.cwd()
    config = load_config(cwd) if config is None else config
    return resolve_build_settings(build_options(**vars(options)), config, cwd, env)
