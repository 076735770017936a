"""`shipit build`: resolve what to build from options, environment and config, then build it."""

from __future__ import annotations

import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from shipit.adapters.engine.client import Engine
from shipit.adapters.git import GitInfo, read_git_info
from shipit.config import FileConfig
from shipit.errors import UsageError
from shipit.output.reporter import Reporter
from shipit.reference import normalise_name, validate_name
from shipit.services.tags import compute_tags

SECRET_NAME_RE = re.compile(r"TOKEN|SECRET|PASSW(OR)?D|KEY|CREDENTIAL|PRIVATE", re.IGNORECASE)
MANAGED_LABEL = "io.shipit.image"
APP_VERSION_ARG = "APP_VERSION"
APP_REVISION_ARG = "APP_REVISION"


@dataclass(frozen=True)
class ImageOptions:
    """The options that select an image and its tags; `build`, `push` and `smoke` share them."""

    name: str | None = None
    tags: Sequence[str] = ()
    version: str | None = None
    latest: bool | None = None


@dataclass(frozen=True)
class BuildOptions:
    """Raw `shipit build` options; None means 'not given' so config and defaults can apply."""

    context: str | None = None
    dockerfile: str | None = None
    image: ImageOptions = field(default_factory=ImageOptions)
    build_args: Sequence[str] = ()
    labels: Sequence[str] = ()
    target: str | None = None
    platform: str | None = None
    pull: bool = False
    no_cache: bool = False
    network: str | None = None
    cache_from: Sequence[str] = ()


@dataclass(frozen=True)
class ImageSelection:
    """An image name and the tags the tag rules produce for it."""

    name: str
    tags: tuple[str, ...]
    version: str | None
    git: GitInfo | None

    @property
    def references(self) -> list[str]:
        return [f"{self.name}:{tag}" for tag in self.tags]


@dataclass(frozen=True)
class BuildSettings:
    """Everything one build needs, resolved once."""

    context: Path
    dockerfile: Path
    image: ImageSelection
    build_args: Mapping[str, str]
    labels: Mapping[str, str]
    target: str | None
    platform: str | None
    pull: bool
    no_cache: bool
    network: str | None
    cache_from: tuple[str, ...]
    warnings: tuple[str, ...] = ()
    # A stage named "builder" is also tagged NAME:buildcache, so CI can push it
    # (`shipit push --push-cache`) and later builds can reuse it (`--cache-from`).
    cache_stage: str | None = None


@dataclass(frozen=True)
class BuildResult:
    """What `shipit build` produced; `as_json()` is the --json object."""

    name: str
    image_id: str
    tags: tuple[str, ...]
    size_bytes: int

    def as_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "image_id": self.image_id,
            "tags": [f"{self.name}:{t}" for t in self.tags],
            "size_bytes": self.size_bytes,
        }


def parse_pairs(values: Sequence[str], option: str) -> dict[str, str]:
    """Parse repeated KEY=VALUE options; a value without '=' is a usage error."""
    pairs: dict[str, str] = {}
    for raw in values:
        key, sep, value = raw.partition("=")
        if not sep or not key.strip():
            shown = raw.split("=", 1)[0][:60]
            raise UsageError(f"{option} '{shown}' must be KEY=VALUE")
        pairs[key.strip()] = value
    return pairs


def resolve_context(options_context: str | None, config: FileConfig, cwd: Path) -> Path:
    """Option (or SHIPIT_CONTEXT, via the CLI) > config > '.'."""
    if options_context:
        return (cwd / options_context).resolve()
    if config.context is not None:
        return config.context.resolve()
    return cwd.resolve()


def select_image(
    options: ImageOptions,
    config: FileConfig,
    context: Path,
    *,
    extra_tags: Sequence[str] = (),
    git: GitInfo | None = None,
    env: Mapping[str, str] | None = None,
) -> ImageSelection:
    """Name and tags from the one rule set: --tag, latest, sha-<head>, version tags, CI tags."""
    from shipit.adapters import ci

    name = options.name or config.name or normalise_name(context.name)
    validate_name(name)
    version = options.version or config.version
    latest = options.latest if options.latest is not None else config.latest
    if git is None:
        git = read_git_info(context) if context.is_dir() else None
    ci_info = ci.detect(env or {})
    git = ci.merge_git(git, ci_info)
    if ci_info is not None:
        extra_tags = [*extra_tags, *ci_info.tags()]
    tags = compute_tags(
        explicit=list(options.tags or config.tags),
        latest=True if latest is None else latest,
        git_sha=git.sha if git else None,
        version=version,
        extra=extra_tags,
    )
    if not tags:
        raise UsageError("no tags to apply: pass --tag or --version, or drop --no-latest")
    return ImageSelection(name=name, tags=tuple(tags), version=version, git=git)


CACHE_STAGE = "builder"
CACHE_TAG = "buildcache"


def cache_image_ref(reference: str) -> str:
    """The builder-stage cache image that goes with an image reference (same repo, tag buildcache)."""
    repository, _, tag = reference.rpartition(":")
    if "/" in tag or not repository:
        repository = reference
    return f"{repository}:{CACHE_TAG}"


def stage_cache_from(cache_from: Sequence[str], tag: str) -> list[str]:
    """The cache sources to send when building `tag`, given the usable --cache-from images.

    With no sources the engine reuses any layer of its local cache, as `docker build` does.
    Sources restrict the legacy builder: a cached layer is reused only when it is an ancestor
    of one of them, and a source missing locally is skipped. Sending just the image's own tag
    would therefore reuse nothing on its first build, and after a build of other content (another
    branch) only that build's layers. So the own tag (the previous build of this stage) joins
    only when --cache-from gave other sources, where it widens what can be reused.
    """
    if not cache_from:
        return []
    return list(dict.fromkeys([*cache_from, tag]))


def _stage_names(dockerfile: Path) -> set[str]:
    try:
        text = dockerfile.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return set()
    return {
        m.lower()
        for m in re.findall(r"^\s*FROM\s+\S+\s+AS\s+(\S+)", text, re.MULTILINE | re.IGNORECASE)
    }


def _declared_args(dockerfile: Path) -> set[str]:
    try:
        text = dockerfile.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return set()
    return set(
        re.findall(r"^\s*ARG\s+([A-Za-z_][A-Za-z0-9_]*)", text, re.MULTILINE | re.IGNORECASE)
    )


def resolve_build_settings(
    options: BuildOptions,
    config: FileConfig,
    cwd: Path,
    env: Mapping[str, str],
    *,
    extra_tags: Sequence[str] = (),
    now: datetime | None = None,
) -> BuildSettings:
    """Validate every input before the engine is contacted."""
    context = resolve_context(options.context, config, cwd)
    if not context.is_dir():
        raise UsageError(
            f"build context '{options.context or context}' does not exist or is not a directory"
        )
    if options.dockerfile:
        dockerfile = (cwd / options.dockerfile).resolve()
    elif config.dockerfile is not None:
        dockerfile = config.dockerfile.resolve()
    else:
        dockerfile = context / "Dockerfile"
    if not dockerfile.is_file():
        raise UsageError(
            f"Dockerfile '{dockerfile}' not found: pass -f/--file or add one to the context"
        )

    cli_args = parse_pairs(options.build_args, "--build-arg")
    user_labels = parse_pairs(options.labels, "--label")
    image = select_image(options.image, config, context, extra_tags=extra_tags, env=env)

    build_args = {**config.build_args, **cli_args}
    declared = _declared_args(dockerfile)
    revision = image.git.sha if image.git else None
    if APP_VERSION_ARG in declared and APP_VERSION_ARG not in build_args:
        build_args[APP_VERSION_ARG] = image.version or (
            f"sha-{revision[:7]}" if revision else "dev"
        )
    if APP_REVISION_ARG in declared and APP_REVISION_ARG not in build_args and revision:
        build_args[APP_REVISION_ARG] = revision

    labels = {**config.labels, **oci_labels(image, env, now=now), **user_labels}
    warnings = tuple(
        f"build arg '{key}' looks like a secret: build args are stored in the image history "
        "(docker history shows them); pass secrets at run time instead"
        for key in {**config.build_args, **cli_args}
        if SECRET_NAME_RE.search(key)
    )
    return BuildSettings(
        context=context,
        dockerfile=dockerfile,
        image=image,
        build_args=build_args,
        labels=labels,
        target=options.target or config.target,
        platform=options.platform or config.platform,
        pull=options.pull,
        no_cache=options.no_cache,
        network=options.network,
        cache_from=tuple(options.cache_from or config.cache_from),
        warnings=warnings,
        cache_stage=CACHE_STAGE
        if not (options.target or config.target) and CACHE_STAGE in _stage_names(dockerfile)
        else None,
    )


CREATED_LABEL = "org.opencontainers.image.created"


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def oci_labels(
    image: ImageSelection, env: Mapping[str, str], *, now: datetime | None = None
) -> dict[str, str]:
    """The org.opencontainers.image.* labels.

    ``created`` is SOURCE_DATE_EPOCH when set, else the time of the HEAD commit, else ``now``;
    with none of them it is left out here and `build_image` sets it from the newest file in
    the build context. Unchanged sources thus give an unchanged label: the engine reuses the
    label steps from its cache, and a rebuild of one commit gives the same image.
    """
    if env.get("SOURCE_DATE_EPOCH", "").isdigit():
        created: datetime | None = datetime.fromtimestamp(int(env["SOURCE_DATE_EPOCH"]), tz=UTC)
    elif image.git is not None and image.git.commit_time is not None:
        created = datetime.fromtimestamp(image.git.commit_time, tz=UTC)
    else:
        created = now
    labels = {
        "org.opencontainers.image.title": image.name,
        # Marks images shipit built, so `shipit prune` never touches anything else.
        MANAGED_LABEL: image.name,
    }
    if created is not None:
        labels[CREATED_LABEL] = _rfc3339(created)
    if image.version:
        labels["org.opencontainers.image.version"] = image.version
    if image.git:
        labels["org.opencontainers.image.revision"] = image.git.sha
        if image.git.remote_url:
            labels["org.opencontainers.image.source"] = image.git.remote_url
    return labels


def build_image(settings: BuildSettings, engine: Engine, reporter: Reporter) -> BuildResult:
    """Send the context, build, apply every tag; the Python API behind `shipit build`."""
    from shipit.context import create_context_archive

    for warning in settings.warnings:
        reporter.warn(warning)
    image = settings.image
    cache_from = list(settings.cache_from)
    if cache_from:
        cache_from = _pull_cache_images(cache_from, engine, reporter)
    with create_context_archive(settings.context, settings.dockerfile) as archive:
        if archive.secret_like:
            shown = ", ".join(archive.secret_like[:8])
            more = (
                f" and {len(archive.secret_like) - 8} more" if len(archive.secret_like) > 8 else ""
            )
            reporter.warn(
                f"the build context sends files that look secret: {shown}{more}; "
                f"add them to {settings.context.name}/.dockerignore"
            )
        reporter.detail(
            f"context {settings.context}: {archive.file_count} files, {archive.size_bytes} bytes"
        )
        labels = settings.labels
        if CREATED_LABEL not in labels:
            newest = archive.newest_mtime or int(time.time())
            labels = {**labels, CREATED_LABEL: _rfc3339(datetime.fromtimestamp(newest, tz=UTC))}
        stages: list[tuple[str | None, str]] = []
        if settings.cache_stage:
            stages.append((settings.cache_stage, f"{image.name}:{CACHE_TAG}"))
        stages.append((settings.target, f"{image.name}:{image.tags[0]}"))
        image_id = ""
        for index, (target, tag) in enumerate(stages):
            no_cache, sources = settings.no_cache, stage_cache_from(cache_from, tag)
            if settings.no_cache and index > 0:
                # --no-cache built the builder stage afresh a moment ago: the whole file reuses
                # only that (a cache source limits the engine to its layers), not older builds.
                no_cache, sources = False, [stages[0][1]]
            archive.fileobj.seek(0)
            with reporter.progress(f"Building {tag}") as view:
                image_id = engine.build(
                    archive.fileobj,
                    dockerfile=archive.dockerfile,
                    tag=tag,
                    buildargs=settings.build_args,
                    labels=labels,
                    target=target,
                    platform=settings.platform,
                    pull=settings.pull,
                    nocache=no_cache,
                    network_mode=settings.network,
                    cache_from=sources,
                    on_event=view,
                )
    for tag in image.tags[1:]:
        engine.tag(image_id, image.name, tag)
    info = engine.require_image(image_id)
    return BuildResult(name=image.name, image_id=info.id, tags=image.tags, size_bytes=info.size)


def _pull_cache_images(references: list[str], engine: Engine, reporter: Reporter) -> list[str]:
    """Pull --cache-from images (and their builder-stage cache) concurrently, so a fresh engine
    can reuse them; the ones that cannot be had are skipped."""
    from concurrent.futures import ThreadPoolExecutor

    wanted = list(dict.fromkeys(r for ref in references for r in (ref, cache_image_ref(ref))))

    def available(reference: str) -> bool:
        return engine.image(reference) is not None or engine.pull(reference) is not None

    with ThreadPoolExecutor(max_workers=min(4, len(wanted))) as pool:
        found = list(pool.map(available, wanted))
    usable = []
    for reference, ok in zip(wanted, found, strict=True):
        if ok:
            reporter.info(f"using cache from {reference}")
            usable.append(reference)
        else:
            reporter.detail(f"cache image {reference} is not available; building without it")
    return usable
