"""`shipit release`: build, then push what was built."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from shipit.cli.app import app
from shipit.cli.common import Invocation, execute, registry_options, write_ci_outputs
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
    SmokeOpt,
    SmokePathOpt,
    SmokeTimeoutOpt,
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
    smoke: SmokeOpt = False,
    smoke_path: SmokePathOpt = "/health",
    smoke_timeout: SmokeTimeoutOpt = 60.0,
    dry_run: DryRunOpt = False,
    retries: RetriesOpt = 5,
    retry_timeout: RetryTimeOpt = 300.0,
    stall_timeout: StallOpt = 120.0,
    json: JsonOpt = False,
    verbose: VerboseOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Build, then push: `shipit build` and `shipit push` with the same options."""
    execute(release_body, locals())


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
