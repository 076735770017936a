"""`shipit login`: log the engine in to every configured registry."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from shipit.cli.app import app
from shipit.cli.common import Invocation, execute, registry_options
from shipit.cli.options import (
    OUTPUT_OPTIONS,
    REGISTRY_OPTIONS,
    REGISTRY_TARGET,
    RETRY_OPTIONS,
    declare,
)

# login takes the registry options that say where and as whom, not how a repository is made.
LOGIN_REGISTRY_OPTIONS = [
    p
    for p in REGISTRY_OPTIONS
    if p[0] in ("region", "profile", "registry_id", "namespace", "username", "password_stdin")
]


@app.command()
@declare(REGISTRY_TARGET, *LOGIN_REGISTRY_OPTIONS, *RETRY_OPTIONS, *OUTPUT_OPTIONS)
def login(**options: Any) -> None:
    """Log in to registries and record the login in the Docker config (like `docker login`)."""
    execute(login_body, options)


def login_body(run: Invocation) -> None:
    """Resolve the registries, then log the engine in to each."""
    from shipit.cli.pushing import wired_destinations
    from shipit.cli.wiring import clients
    from shipit.config import load_config
    from shipit.services.login import login_all
    from shipit.services.retry import RetryPolicy

    o, reporter, env = run.options, run.reporter, run.env
    config = load_config(Path.cwd())
    destinations = wired_destinations(registry_options(dict(config.registry), o, reporter), env)
    engine = clients().engine(env, timeout=o.stall_timeout)
    retry = RetryPolicy(attempts=o.retries, total_seconds=o.retry_timeout)
    results = login_all(destinations, engine, reporter, env, retry=retry)
    if o.json:
        reporter.emit_json({"logged_in": results})
