"""`shipit release`: build, then push what was built."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from shipit.cli.app import app
from shipit.cli.common import Invocation, execute, registry_options, write_ci_outputs
from shipit.cli.options import (
    BUILD_OPTIONS,
    CONTEXT,
    DRY_RUN,
    HYGIENE_OPTIONS,
    OUTPUT_OPTIONS,
    PUSH_OPTIONS,
    REGISTRY,
    REGISTRY_OPTIONS,
    RETRY_OPTIONS,
    SMOKE_OPTIONS,
    declare,
)


@app.command()
@declare(
    CONTEXT,
    REGISTRY,
    *BUILD_OPTIONS,
    *REGISTRY_OPTIONS,
    *PUSH_OPTIONS,
    *HYGIENE_OPTIONS,
    *SMOKE_OPTIONS,
    DRY_RUN,
    *RETRY_OPTIONS,
    *OUTPUT_OPTIONS,
)
def release(**options: Any) -> None:
    """Build, then push: `shipit build` and `shipit push` with the same options."""
    execute(release_body, options)


def release_body(run: Invocation) -> None:
    """Resolve build and push settings, then build, smoke-test if asked, and push."""
    from shipit.cli.build import build_settings
    from shipit.cli.platforms import release_for_platforms
    from shipit.cli.pushing import emit_references, push_settings, wired_destinations
    from shipit.cli.wiring import clients
    from shipit.config import load_config
    from shipit.services.release import SmokeCheck, release_image

    o, reporter, env = run.options, run.reporter, run.env
    config = load_config(Path.cwd())
    settings = build_settings(o, env, config)
    registries = registry_options(dict(config.registry), o, reporter)
    wired = clients()
    destinations = wired_destinations(registries, env)
    engine = wired.engine(env, timeout=o.stall_timeout)
    pushing = push_settings(**vars(o))
    check = SmokeCheck(path=o.smoke_path, timeout=o.smoke_timeout) if o.smoke else None
    clients_and_smoke: dict[str, Any] = {"registry_client": wired.registry, "smoke": check}
    if release_for_platforms(
        settings, destinations, engine, reporter, pushing, env, **clients_and_smoke
    ):
        return  # several --platform values: built, pushed, indexes published
    released = release_image(settings, destinations, engine, reporter, pushing, **clients_and_smoke)
    if not o.dry_run:
        write_ci_outputs(
            env,
            settings.image.name,
            settings.image.references,
            released.pushed,
            image_id=released.built.image_id if released.built else None,
            iidfile=o.iidfile,
            metadata_file=o.metadata_file,
        )
    if o.json:
        reporter.emit_json(released.as_json(dry_run=o.dry_run))
    else:
        emit_references(reporter, released.pushed)
