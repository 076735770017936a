"""`shipit push`: push the selected image to every configured registry."""

from __future__ import annotations

from functools import partial
from pathlib import Path

from shipit.cli.app import app
from shipit.cli.common import make_reporter, read_env, registry_options, run_body, write_ci_outputs
from shipit.cli.options import (
    AllowOverwriteOpt,
    CreateRepoOpt,
    DryRunOpt,
    ImmutableOpt,
    JsonOpt,
    KmsOpt,
    LatestOpt,
    LifecycleKeepOpt,
    LifecycleUntaggedOpt,
    NameOpt,
    NamespaceOpt,
    PasswordStdinOpt,
    ProfileOpt,
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
    UsernameOpt,
    VerboseOpt,
    VersionOpt,
)
from shipit.cli.platforms import MergeOpt, PlatformOnlyOpt, PushPlatformOpt


@app.command()
def push(
    registry: RegistryOpt = None,
    name: NameOpt = None,
    tag: TagOpt = None,
    version: VersionOpt = None,
    latest: LatestOpt = None,
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
    platform: PushPlatformOpt = None,
    platform_only: PlatformOnlyOpt = False,
    merge: MergeOpt = False,
    lifecycle_keep: LifecycleKeepOpt = None,
    lifecycle_untagged_days: LifecycleUntaggedOpt = None,
    scan_gate: ScanGateOpt = None,
    scan_timeout: ScanTimeoutOpt = 600.0,
    dry_run: DryRunOpt = False,
    retries: RetriesOpt = 5,
    retry_timeout: RetryTimeOpt = 300.0,
    stall_timeout: StallOpt = 120.0,
    json: JsonOpt = False,
    verbose: VerboseOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Push the built image's tags to one or more registries and verify each digest."""
    reporter = make_reporter(json=json, verbose=verbose, quiet=quiet)

    def body() -> None:
        from shipit.cli.wiring import clients
        from shipit.config import load_config
        from shipit.services.build import ImageOptions, resolve_context, select_image
        from shipit.services.push import PushSettings, push_image
        from shipit.services.registries import make_destinations, make_ecr_registry
        from shipit.services.retry import RetryPolicy

        env = read_env()
        cwd = Path.cwd()
        config = load_config(cwd)
        options = registry_options(
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
        image_options = ImageOptions(name=name, tags=tag or (), version=version, latest=latest)
        selection = select_image(image_options, config, resolve_context(None, config, cwd), env=env)
        wired = clients()
        destinations = make_destinations(
            options, env, ecr_factory=partial(make_ecr_registry, aws=wired.aws)
        )
        settings = PushSettings(
            retry=RetryPolicy(attempts=retries, total_seconds=retry_timeout),
            allow_overwrite=allow_overwrite,
            dry_run=dry_run,
            stall_seconds=stall_timeout,
            push_cache=push_cache,
        )
        from shipit.cli.platforms import push_for_platforms, report_push

        multi = push_for_platforms(
            selection,
            platform or config.platform,
            destinations,
            lambda: wired.engine(env, timeout=stall_timeout),
            reporter,
            settings,
            platform_only=platform_only,
            merge=merge,
            registry_client=wired.registry,
        )
        if multi is not None:
            report_push(multi, selection, reporter, env, dry_run=dry_run)
            return
        engine = wired.engine(env, timeout=stall_timeout)
        pushed = push_image(
            selection, destinations, engine, reporter, settings, registry_client=wired.registry
        )
        write_ci_outputs(
            env,
            selection.name,
            selection.references,
            pushed,
            image_id=None if dry_run else engine.require_image(selection.references[0]).id,
        )
        if json:
            reporter.emit_json({"pushed": [p.as_json() for p in pushed], "dry_run": dry_run})
        else:
            for p in pushed:
                reporter.emit(f"{p.reference}@{p.digest}" if p.digest else p.reference)

    run_body(reporter, body)
