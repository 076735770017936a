"""`shipit login`: log the engine in to every configured registry."""

from __future__ import annotations

from pathlib import Path

from shipit.cli.app import app
from shipit.cli.common import make_reporter, read_env, registry_options, run_body
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
    reporter = make_reporter(json=json, verbose=verbose, quiet=quiet)

    def body() -> None:
        from shipit.cli.pushing import wired_destinations
        from shipit.cli.wiring import clients
        from shipit.config import load_config
        from shipit.services.login import login_all

        env = read_env()
        config = load_config(Path.cwd())
        options = registry_options(
            dict(config.registry),
            registry=registry,
            region=region,
            profile=profile,
            registry_id=registry_id,
            repository=None,
            create_repo=None,
            immutable_tags=None,
            kms_key=None,
            namespace=namespace,
            username=username,
            password_stdin=password_stdin,
            reporter=reporter,
        )
        destinations = wired_destinations(options, env)
        engine = clients().engine(env, timeout=stall_timeout)
        from shipit.services.retry import RetryPolicy

        results = login_all(
            destinations,
            engine,
            reporter,
            env,
            retry=RetryPolicy(attempts=retries, total_seconds=retry_timeout),
        )
        if json:
            reporter.emit_json({"logged_in": results})

    run_body(reporter, body)
