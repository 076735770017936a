"""`shipit release`: build, then push what was built."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Annotated

import typer

from shipit.cli.app import app
from shipit.cli.common import (
    build_options,
    make_reporter,
    read_env,
    registry_options,
    run_body,
    write_ci_outputs,
)
from shipit.cli.options import (
    AllowOverwriteOpt,
    BuildArgOpt,
    CacheFromOpt,
    ContextArg,
    CreateRepoOpt,
    DryRunOpt,
    FileOpt,
    ImmutableOpt,
    JsonOpt,
    KmsOpt,
    LabelOpt,
    LatestOpt,
    LifecycleKeepOpt,
    LifecycleUntaggedOpt,
    NameOpt,
    NamespaceOpt,
    NetworkOpt,
    NoCacheOpt,
    PasswordStdinOpt,
    PlatformOpt,
    ProfileOpt,
    PullOpt,
    PushCacheOpt,
    QuietOpt,
    RegionOpt,
    RegistryIdOpt,
    RegistryOpt,
    RepositoryOpt,
    RetriesOpt,
    RetryTimeOpt,
    ScanGateOpt,
    ScanTimeoutOpt,
    StallOpt,
    TagOpt,
    TargetOpt,
    UsernameOpt,
    VerboseOpt,
    VersionOpt,
)


@app.command()
def release(
    context: ContextArg = None,
    registry: RegistryOpt = None,
    file: FileOpt = None,
    name: NameOpt = None,
    tag: TagOpt = None,
    version: VersionOpt = None,
    latest: LatestOpt = None,
    build_arg: BuildArgOpt = None,
    target: TargetOpt = None,
    platform: PlatformOpt = None,
    pull: PullOpt = False,
    no_cache: NoCacheOpt = False,
    label: LabelOpt = None,
    network: NetworkOpt = None,
    cache_from: CacheFromOpt = None,
    region: RegionOpt = None,
    profile: ProfileOpt = None,
    registry_id: RegistryIdOpt = None,
    repository: RepositoryOpt = None,
    create_repo: CreateRepoOpt = None,
    immutable_tags: ImmutableOpt = None,
    kms_key: KmsOpt = None,
    namespace: NamespaceOpt = None,
    username: UsernameOpt = None,
    password_stdin: PasswordStdinOpt = False,
    allow_overwrite: AllowOverwriteOpt = False,
    push_cache: PushCacheOpt = False,
    lifecycle_keep: LifecycleKeepOpt = None,
    lifecycle_untagged_days: LifecycleUntaggedOpt = None,
    scan_gate: ScanGateOpt = None,
    scan_timeout: ScanTimeoutOpt = 600.0,
    smoke: Annotated[
        bool,
        typer.Option(
            "--smoke", help="Run `shipit smoke` after the build; push nothing if it fails."
        ),
    ] = False,
    smoke_path: Annotated[
        str, typer.Option("--smoke-path", help="Health path for --smoke.")
    ] = "/health",
    smoke_timeout: Annotated[
        float, typer.Option("--smoke-timeout", min=1, help="Seconds --smoke waits.")
    ] = 60.0,
    dry_run: DryRunOpt = False,
    retries: RetriesOpt = 5,
    retry_timeout: RetryTimeOpt = 300.0,
    stall_timeout: StallOpt = 120.0,
    json: JsonOpt = False,
    verbose: VerboseOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Build, then push: `shipit build` and `shipit push` with the same options."""
    reporter = make_reporter(json=json, verbose=verbose, quiet=quiet)

    def body() -> None:
        from shipit.cli.wiring import clients
        from shipit.config import load_config
        from shipit.services.build import build_image, resolve_build_settings
        from shipit.services.push import PushSettings, push_image
        from shipit.services.registries import make_destinations, make_ecr_registry
        from shipit.services.retry import RetryPolicy

        env = read_env()
        cwd = Path.cwd()
        config = load_config(cwd)
        options = build_options(
            context=context,
            file=file,
            name=name,
            tag=tag,
            version=version,
            latest=latest,
            build_arg=build_arg,
            label=label,
            target=target,
            platform=platform,
            pull=pull,
            no_cache=no_cache,
            network=network,
            cache_from=cache_from,
        )
        settings = resolve_build_settings(options, config, cwd, env)
        registries = registry_options(
            dict(config.registry),
            registry=registry,
            region=region,
            profile=profile,
            registry_id=registry_id,
            repository=repository,
            create_repo=create_repo,
            immutable_tags=immutable_tags,
            kms_key=kms_key,
            namespace=namespace,
            username=username,
            password_stdin=password_stdin,
            reporter=reporter,
            lifecycle_keep=lifecycle_keep,
            lifecycle_untagged_days=lifecycle_untagged_days,
            scan_gate=scan_gate,
            scan_timeout=scan_timeout,
        )
        wired = clients()
        destinations = make_destinations(
            registries, env, ecr_factory=partial(make_ecr_registry, aws=wired.aws)
        )
        engine = wired.engine(env, timeout=stall_timeout)
        push_settings = PushSettings(
            retry=RetryPolicy(attempts=retries, total_seconds=retry_timeout),
            allow_overwrite=allow_overwrite,
            dry_run=dry_run,
            stall_seconds=stall_timeout,
            push_cache=push_cache,
        )
        if dry_run:
            reporter.info(
                f"would build {settings.context} as " + ", ".join(settings.image.references)
            )
            pushed = push_image(
                settings.image,
                destinations,
                engine,
                reporter,
                push_settings,
                built=False,
                registry_client=wired.registry,
            )
            built = None
        else:
            with reporter.phase("Build"):
                built = build_image(settings, engine, reporter)
            if smoke:
                from shipit.services.smoke import smoke_test

                with reporter.phase("Smoke test"):
                    result = smoke_test(
                        engine,
                        reporter,
                        settings.image.references[0],
                        path=smoke_path,
                        timeout=smoke_timeout,
                    )
                reporter.info(f"healthy in {result.seconds_to_healthy:.1f}s")
            pushed = push_image(
                settings.image,
                destinations,
                engine,
                reporter,
                push_settings,
                registry_client=wired.registry,
            )
            write_ci_outputs(env, settings.image.name, settings.image.references, pushed)
        if json:
            reporter.emit_json(
                {
                    "build": built.as_json() if built else None,
                    "pushed": [p.as_json() for p in pushed],
                    "dry_run": dry_run,
                }
            )
        else:
            for p in pushed:
                reporter.emit(f"{p.reference}@{p.digest}" if p.digest else p.reference)

    run_body(reporter, body)
