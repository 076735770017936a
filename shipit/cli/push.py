"""`shipit push`: push the selected image to every configured registry."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from shipit.cli.app import app
from shipit.cli.common import (
    Invocation,
    execute,
    registry_options,
    select_image_here,
    write_ci_outputs,
)
from shipit.cli.options import (
    DRY_RUN,
    HYGIENE_OPTIONS,
    IMAGE_OPTIONS,
    OUTPUT_OPTIONS,
    PUSH_OPTIONS,
    REGISTRY,
    REGISTRY_OPTIONS,
    RETRY_OPTIONS,
    Param,
    declare,
)
from shipit.cli.platforms import MergeOpt, PlatformOnlyOpt, PushPlatformOpt

PLATFORM_PUSH_OPTIONS: list[Param] = [
    ("platform", PushPlatformOpt, None),
    ("platform_only", PlatformOnlyOpt, False),
    ("merge", MergeOpt, False),
]


@app.command()
@declare(
    REGISTRY,
    *IMAGE_OPTIONS,
    *REGISTRY_OPTIONS,
    *PUSH_OPTIONS,
    *PLATFORM_PUSH_OPTIONS,
    *HYGIENE_OPTIONS,
    DRY_RUN,
    *RETRY_OPTIONS,
    *OUTPUT_OPTIONS,
)
def push(**options: Any) -> None:
    """Push the built image's tags to one or more registries and verify each digest."""
    execute(push_body, options)


def push_body(run: Invocation) -> None:
    """Select the image, resolve registries and push settings, push (one platform or several)."""
    from shipit.cli.platforms import push_for_platforms, report_push
    from shipit.cli.pushing import emit_references, push_settings, wired_destinations
    from shipit.cli.wiring import clients
    from shipit.config import load_config
    from shipit.services.push import push_image

    o, reporter, env = run.options, run.reporter, run.env
    config = load_config(Path.cwd())
    registries = registry_options(dict(config.registry), o, reporter)
    selection = select_image_here(o, config, env)
    wired = clients()
    destinations = wired_destinations(registries, env)
    settings = push_settings(**vars(o))
    multi = push_for_platforms(
        selection,
        o.platform or config.platform,
        destinations,
        lambda: wired.engine(env, timeout=o.stall_timeout),
        reporter,
        settings,
        platform_only=o.platform_only,
        merge=o.merge,
        registry_client=wired.registry,
    )
    if multi is not None:
        report_push(multi, selection, reporter, env, dry_run=o.dry_run)
        return
    engine = wired.engine(env, timeout=o.stall_timeout)
    pushed = push_image(
        selection, destinations, engine, reporter, settings, registry_client=wired.registry
    )
    write_ci_outputs(
        env,
        selection.name,
        selection.references,
        pushed,
        image_id=None if o.dry_run else engine.require_image(selection.references[0]).id,
    )
    if o.json:
        reporter.emit_json({"pushed": [p.as_json() for p in pushed], "dry_run": o.dry_run})
    else:
        emit_references(reporter, pushed)
