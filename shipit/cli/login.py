"""`shipit login`: log the engine in to every configured registry."""

from __future__ import annotations

from pathlib import Path

from shipit.cli.app import app
from shipit.cli.common import Invocation, execute, registry_options
from shipit.cli.options import (
    JsonOpt,
    NamespaceOpt,
    PasswordStdinOpt,
    ProfileOpt,
    QuietOpt,
    RegionOpt,
    RegistryIdOpt,
    RegistryTargetOpt,
    RetriesOpt,
    RetryTimeOpt,
    StallOpt,
    UsernameOpt,
    VerboseOpt,
)


@app.command()
def login(
    registry: RegistryTargetOpt = None,
    region: RegionOpt = None,
    profile: ProfileOpt = None,
    registry_id: RegistryIdOpt = None,
    namespace: NamespaceOpt = None,
    username: UsernameOpt = None,
    password_stdin: PasswordStdinOpt = False,
    retries: RetriesOpt = 5,
    retry_timeout: RetryTimeOpt = 300.0,
    stall_timeout: StallOpt = 120.0,
    json: JsonOpt = False,
    verbose: VerboseOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Log in to registries and record the login in the Docker config (like `docker login`)."""
    execute(login_body, locals())


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
