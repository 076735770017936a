"""Option types shared by the commands (name, tags, registries, output, retries)."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import typer

NameOpt = Annotated[
    str | None, typer.Option("--name", envvar="SHIPIT_NAME", help="Image name (repository).")
]

TagOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--tag", "-t", envvar="SHIPIT_TAGS", metavar="TAG", help="Extra tag (repeatable)."
    ),
]

VersionOpt = Annotated[
    str | None,
    typer.Option(
        "--version", envvar="SHIPIT_VERSION", help="Release version: 1.2.3 adds 1.2.3, 1.2 and 1."
    ),
]

LatestOpt = Annotated[
    bool | None,
    typer.Option("--latest/--no-latest", envvar="SHIPIT_LATEST", help="Add the 'latest' tag."),
]

JsonOpt = Annotated[
    bool, typer.Option("--json", help="Print one JSON object on stdout; everything else on stderr.")
]

VerboseOpt = Annotated[bool, typer.Option("--verbose", "-v", help="More detail.")]

QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="Only errors and results.")]

ContextArg = Annotated[
    str | None,
    typer.Argument(
        envvar="SHIPIT_CONTEXT", help="Build context directory (default: config, or '.')."
    ),
]

FileOpt = Annotated[
    str | None,
    typer.Option("--file", "-f", envvar="SHIPIT_DOCKERFILE", help="Dockerfile path."),
]

BuildArgOpt = Annotated[
    list[str] | None,
    typer.Option("--build-arg", metavar="KEY=VALUE", help="KEY=VALUE build argument (repeatable)."),
]

TargetOpt = Annotated[str | None, typer.Option("--target", help="Build this stage.")]

PlatformOpt = Annotated[
    str | None, typer.Option("--platform", envvar="SHIPIT_PLATFORM", help="e.g. linux/amd64.")
]

PullOpt = Annotated[bool, typer.Option("--pull", help="Always try to pull newer base images.")]

NoCacheOpt = Annotated[bool, typer.Option("--no-cache", help="Do not use the build cache.")]

LabelOpt = Annotated[
    list[str] | None,
    typer.Option("--label", metavar="KEY=VALUE", help="KEY=VALUE image label (repeatable)."),
]

NetworkOpt = Annotated[str | None, typer.Option("--network", help="Network for RUN steps.")]

IidFileOpt = Annotated[
    str | None, typer.Option("--iidfile", metavar="FILE", help="Write the image id to FILE.")
]
MetadataFileOpt = Annotated[
    str | None,
    typer.Option(
        "--metadata-file", metavar="FILE", help="Write buildx's build metadata JSON to FILE."
    ),
]
CacheFromOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--cache-from", metavar="REF", help="Image to use as a cache source (repeatable)."
    ),
]

SecretOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--secret",
        metavar="id=ID[,src=PATH|,env=VAR]",
        help="Build secret for RUN --mount=type=secret (repeatable; BuildKit). Never stored.",
    ),
]

SshOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--ssh",
        metavar="default|ID[=SOCKET]",
        help="SSH agent for RUN --mount=type=ssh (repeatable; default: SSH_AUTH_SOCK).",
    ),
]

RegistryOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--registry",
        "-r",
        metavar="KIND",
        envvar="SHIPIT_REGISTRIES",
        help="ecr, dockerhub, or HOST[:PORT][/NAMESPACE] (repeatable: pushed concurrently).",
    ),
]
# login and doctor take the same registries, but push nothing.
RegistryTargetOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--registry",
        "-r",
        metavar="KIND",
        envvar="SHIPIT_REGISTRIES",
        help="ecr, dockerhub, or HOST[:PORT][/NAMESPACE] (repeatable).",
    ),
]

RegionOpt = Annotated[str | None, typer.Option("--region", help="AWS region (ECR).")]

ProfileOpt = Annotated[
    str | None, typer.Option("--profile", envvar="AWS_PROFILE", help="AWS profile (ECR).")
]

RegistryIdOpt = Annotated[
    str | None, typer.Option("--registry-id", help="Another account's ECR registry id.")
]

RepositoryOpt = Annotated[
    str | None, typer.Option("--repository", help="Repository name (default: the image name).")
]

CreateRepoOpt = Annotated[
    bool | None,
    typer.Option("--create-repo/--no-create-repo", help="Create the ECR repository if missing."),
]

ImmutableOpt = Annotated[
    bool | None,
    typer.Option("--immutable-tags/--mutable-tags", help="Tag mutability of a new ECR repository."),
]

KmsOpt = Annotated[str | None, typer.Option("--kms-key", help="KMS key for a new ECR repository.")]

NamespaceOpt = Annotated[
    str | None, typer.Option("--namespace", help="Docker Hub namespace (user or organisation).")
]

UsernameOpt = Annotated[str | None, typer.Option("--username", "-u", help="Registry user name.")]

PasswordStdinOpt = Annotated[
    bool, typer.Option("--password-stdin", help="Read the password or token from stdin.")
]

AllowOverwriteOpt = Annotated[
    bool,
    typer.Option(
        "--allow-overwrite",
        help="Allow replacing an existing release tag (1.2.3) with another image.",
    ),
]

PushCacheOpt = Annotated[
    bool,
    typer.Option("--push-cache", help="Also push the builder-stage cache image (NAME:buildcache)."),
]

LifecycleKeepOpt = Annotated[
    int | None,
    typer.Option("--lifecycle-keep", min=1, help="ECR: keep only the newest N tagged images."),
]

LifecycleUntaggedOpt = Annotated[
    int | None,
    typer.Option(
        "--lifecycle-untagged-days", min=1, help="ECR: expire untagged images after D days."
    ),
]

ScanGateOpt = Annotated[
    str | None,
    typer.Option(
        "--scan-gate",
        help="ECR: wait for scan-on-push findings; fail at or above LOW|MEDIUM|HIGH|CRITICAL.",
    ),
]

ScanTimeoutOpt = Annotated[
    float, typer.Option("--scan-timeout", min=1, help="ECR: seconds to wait for the scan.")
]

DryRunOpt = Annotated[
    bool, typer.Option("--dry-run", help="Print what would happen; change nothing.")
]

RetriesOpt = Annotated[
    int,
    typer.Option(
        "--retries", min=1, max=20, envvar="SHIPIT_RETRIES", help="Attempts per operation."
    ),
]

RetryTimeOpt = Annotated[
    float,
    typer.Option(
        "--retry-timeout",
        min=1,
        envvar="SHIPIT_RETRY_TIMEOUT",
        help="Seconds for all attempts of one operation.",
    ),
]

StallOpt = Annotated[
    float,
    typer.Option(
        "--stall-timeout",
        min=1,
        envvar="SHIPIT_STALL_TIMEOUT",
        help="Fail when the engine or registry makes no progress for this many seconds.",
    ),
]

PathOpt = Annotated[
    str, typer.Option("--path", help="HTTP path that must answer 200 (the health endpoint).")
]

PortOpt = Annotated[
    int | None,
    typer.Option(
        "--port",
        min=1,
        max=65535,
        help="Container port serving HTTP (default: the image's single EXPOSE).",
    ),
]

EnvOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--env", "-e", help="KEY=VALUE environment variable for the container (repeatable)."
    ),
]

SmokeOpt = Annotated[
    bool,
    typer.Option("--smoke", help="Run `shipit smoke` after the build; push nothing if it fails."),
]

SmokePathOpt = Annotated[str, typer.Option("--smoke-path", help="Health path for --smoke.")]

SmokeTimeoutOpt = Annotated[
    float, typer.Option("--smoke-timeout", min=1, help="Seconds --smoke waits.")
]

# ---------------------------------------------------------------- option groups

# A command's parameter: (name, Annotated type, default).
Param = tuple[str, Any, Any]

OUTPUT_OPTIONS: list[Param] = [
    ("json", JsonOpt, False),
    ("verbose", VerboseOpt, False),
    ("quiet", QuietOpt, False),
]
IMAGE_OPTIONS: list[Param] = [
    ("name", NameOpt, None),
    ("tag", TagOpt, None),
    ("version", VersionOpt, None),
    ("latest", LatestOpt, None),
]
CONTEXT: Param = ("context", ContextArg, None)
BUILD_OPTIONS: list[Param] = [
    ("file", FileOpt, None),
    *IMAGE_OPTIONS,
    ("build_arg", BuildArgOpt, None),
    ("target", TargetOpt, None),
    ("platform", PlatformOpt, None),
    ("pull", PullOpt, False),
    ("no_cache", NoCacheOpt, False),
    ("label", LabelOpt, None),
    ("network", NetworkOpt, None),
    ("cache_from", CacheFromOpt, None),
    ("secret", SecretOpt, None),
    ("ssh", SshOpt, None),
    ("iidfile", IidFileOpt, None),
    ("metadata_file", MetadataFileOpt, None),
]
REGISTRY: Param = ("registry", RegistryOpt, None)
REGISTRY_TARGET: Param = ("registry", RegistryTargetOpt, None)
REGISTRY_OPTIONS: list[Param] = [
    ("region", RegionOpt, None),
    ("profile", ProfileOpt, None),
    ("registry_id", RegistryIdOpt, None),
    ("repository", RepositoryOpt, None),
    ("create_repo", CreateRepoOpt, None),
    ("immutable_tags", ImmutableOpt, None),
    ("kms_key", KmsOpt, None),
    ("namespace", NamespaceOpt, None),
    ("username", UsernameOpt, None),
    ("password_stdin", PasswordStdinOpt, False),
]
PUSH_OPTIONS: list[Param] = [
    ("allow_overwrite", AllowOverwriteOpt, False),
    ("push_cache", PushCacheOpt, False),
]
HYGIENE_OPTIONS: list[Param] = [
    ("lifecycle_keep", LifecycleKeepOpt, None),
    ("lifecycle_untagged_days", LifecycleUntaggedOpt, None),
    ("scan_gate", ScanGateOpt, None),
    ("scan_timeout", ScanTimeoutOpt, 600.0),
]
DRY_RUN: Param = ("dry_run", DryRunOpt, False)
RETRY_OPTIONS: list[Param] = [
    ("retries", RetriesOpt, 5),
    ("retry_timeout", RetryTimeOpt, 300.0),
    ("stall_timeout", StallOpt, 120.0),
]

SMOKE_OPTIONS: list[Param] = [
    ("smoke", SmokeOpt, False),
    ("smoke_path", SmokePathOpt, "/health"),
    ("smoke_timeout", SmokeTimeoutOpt, 60.0),
]

F = TypeVar("F", bound=Callable[..., Any])


def declare(*params: Param) -> Callable[[F], F]:
    """Give a command taking `**options` these parameters, in this order, as Typer reads them.

    Typer builds a command's options from its signature: the shared groups above are declared
    once here instead of in every command's parameter list. The command receives them by name.
    """

    def attach(command: F) -> F:
        parameters = [
            inspect.Parameter(
                name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=kind
            )
            for name, kind, default in params
        ]
        command.__signature__ = inspect.Signature(parameters, return_annotation=None)  # type: ignore[attr-defined]
        command.__annotations__ = {name: kind for name, kind, _ in params} | {"return": None}
        return command

    return attach
