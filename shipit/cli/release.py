"""`shipit release`: build, then push what was built."""

from __future__ import annotations

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
    IidFileOpt,
    ImmutableOpt,
    JsonOpt,
    KmsOpt,
    LabelOpt,
    LatestOpt,
    LifecycleKeepOpt,
    LifecycleUntaggedOpt,
    MetadataFileOpt,
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
    SecretOpt,
    SshOpt,
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
    secret: SecretOpt = None,
    ssh: SshOpt = None,
    iidfile: IidFileOpt = None,
    metadata_file: MetadataFileOpt = None,
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
        from shipit.cli.pushing import emit_references, push_settings, wired_destinations
        from shipit.cli.wiring import clients
        from shipit.config import load_config
        from shipit.services.build import resolve_build_settings
        from shipit.services.release import SmokeCheck, release_image

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
            secret=secret,
            ssh=ssh,
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
        destinations = wired_destinations(registries, env)
        engine = wired.engine(env, timeout=stall_timeout)
        pushing = push_settings(
            retries=retries,
            retry_timeout=retry_timeout,
            allow_overwrite=allow_overwrite,
            dry_run=dry_run,
            stall_timeout=stall_timeout,
            push_cache=push_cache,
        )
        check = SmokeCheck(path=smoke_path, timeout=smoke_timeout) if smoke else None
        from shipit.cli.platforms import release_for_platforms

        if release_for_platforms(
            settings,
            destinations,
            engine,
            reporter,
            pushing,
            env,
            registry_client=wired.registry,
            smoke=check,
        ):
            return  # several --platform values: built, pushed, indexes published
        released = release_image(
            settings,
            destinations,
            engine,
            reporter,
            pushing,
            registry_client=wired.registry,
            smoke=check,
        )
        if not dry_run:
            write_ci_outputs(
                env,
                settings.image.name,
                settings.image.references,
                released.pushed,
                image_id=released.built.image_id if released.built else None,
                iidfile=iidfile,
                metadata_file=metadata_file,
            )
        if json:
            reporter.emit_json(released.as_json(dry_run=dry_run))
        else:
            emit_references(reporter, released.pushed)

    run_body(reporter, body)
