"""`shipit build`: resolve what to build from options, environment and config, then build it."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

from shipit.adapters.engine.client import Engine
from shipit.adapters.git import GitInfo, read_git_info, source_url
from shipit.config import FileConfig
from shipit.errors import UsageError
from shipit.output.reporter import Reporter
from shipit.reference import normalise_name, validate_name
from shipit.services.builders import SessionPlan, context_transport
from shipit.services.tags import compute_tags
from shipit.settings import context_dir, dockerfile_path

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
    # docker's --secret id=ID[,src=PATH|,env=VAR] and --ssh default|ID[=SOCKET] (BuildKit only)
    secrets: Sequence[str] = ()
    ssh: Sequence[str] = ()
    # Also build the `builder` stage as NAME:buildcache: None decides by cache_stage_wanted().
    cache_stage: bool | None = None


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
    # "buildkit" or "legacy" when DOCKER_BUILDKIT or the config chose; None: the engine decides.
    builder: str | None = None
    # What a BuildKit build's session serves (secrets, SSH agents, registry credentials).
    session: SessionPlan = field(default_factory=SessionPlan)
    # How BuildKit gets the context: "sync" (file sync in the session) or "tar" (request body).
    context_transport: str = "auto"
    # Keeps this build's copy of the context in the engine apart from other builds of the same
    # directory (the platform, when several platforms build side by side); "" as docker does.
    context_key: str = ""
    # Called when the engine starts the build's first step (not its [internal] loading);
    # several platforms building side by side use it to let the slow, emulated ones lead.
    on_first_step: Callable[[], None] | None = None


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


def parse_build_args(values: Sequence[str], env: Mapping[str, str]) -> dict[str, str]:
    """`--build-arg KEY=VALUE`, or `--build-arg KEY` for the value of KEY in the environment
    (left out when unset, as docker does)."""
    pairs: dict[str, str] = {}
    for raw in values:
        if "=" in raw:
            pairs.update(parse_pairs([raw], "--build-arg"))
            continue
        key = raw.strip()
        if not key:
            raise UsageError("--build-arg needs KEY=VALUE or KEY")
        if key in env:
            pairs[key] = env[key]
    return pairs


def select_image(
    options: ImageOptions,
    config: FileConfig,
    context: Path,
    *,
    extra_tags: Sequence[str] = (),
    git: GitInfo | None = None,
    env: Mapping[str, str] | None = None,
) -> ImageSelection:
    """Name and tags from the one rule set: --tag, latest, sha-<head>, version tags, CI tags.

    In CI (a detected CI system), `latest` defaults to the CI's rule (default branch or a
    release tag, as docker/metadata-action) and a git tag's version is the version; an explicit
    --latest/--no-latest (or config `latest`) and --version (or config `version`) win.
    """
    from shipit.adapters import ci

    tag_name, explicit = split_name_tags(list(options.tags or config.tags))
    name = options.name or config.name
    if tag_name and name and tag_name != name:
        raise UsageError(
            f"-t names image '{tag_name}' but the image is '{name}' "
            f"({'--name' if options.name else 'the config'}): use one name",
            hint=f"pass -t {tag_name.rsplit('/', 1)[-1]}... as a plain tag, or --name {tag_name}",
        )
    name = name or tag_name or normalise_name(context.name)
    validate_name(name)
    ci_info = ci.detect(env or {})
    version = options.version or config.version or (ci_info.version() if ci_info else None)
    latest = options.latest if options.latest is not None else config.latest
    if latest is None:
        latest = ci_info.latest() if ci_info is not None else True
    if git is None:
        git = read_git_info(context) if context.is_dir() else None
    git = ci.merge_git(git, ci_info)
    if ci_info is not None:
        extra_tags = [*extra_tags, *ci_info.tags()]
    tags = compute_tags(
        explicit=explicit,
        latest=latest,
        git_sha=git.sha if git else None,
        version=version,
        extra=extra_tags,
    )
    if not tags:
        why = "drop --no-latest" if ci_info is None else "pass --latest"
        raise UsageError(
            f"no tags to apply: pass --tag or --version, or {why}",
            hint=None
            if ci_info is None
            else "in CI, 'latest' goes only to the default branch and to release tags",
        )
    return ImageSelection(name=name, tags=tuple(tags), version=version, git=git)


def split_name_tags(values: Sequence[str]) -> tuple[str | None, list[str]]:
    """`-t` values as docker takes them: `TAG` or `NAME:TAG`; the one name they give, and the tags.

    Two different names are refused: one build makes one image name.
    """
    names: dict[str, str] = {}
    tags: list[str] = []
    for value in values:
        repository, sep, tag = value.rpartition(":")
        if sep and repository and "/" not in tag:
            names.setdefault(validate_name(repository), value)
            tags.append(tag)
        elif "/" in value:
            names.setdefault(validate_name(value), value)
            tags.append("latest")
        else:
            tags.append(value)
    if len(names) > 1:
        raise UsageError(
            "-t names more than one image (" + ", ".join(f"'{n}'" for n in names) + "): "
            "one build makes one image name; pass the others as plain tags"
        )
    return (next(iter(names)) if names else None), tags


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


def cache_stage_wanted(
    given: bool | None, env: Mapping[str, str], cache_from: Sequence[str]
) -> bool:
    """Whether a build also makes NAME:buildcache, the `builder` stage's image that
    `push --push-cache` publishes for other runners' --cache-from. It costs a second engine
    build, so by default only where it is used: in CI, with --cache-from, for
    `release --push-cache`; SHIPIT_CACHE_STAGE=1|0 decides otherwise."""
    if given is not None:
        return given
    choice = env.get("SHIPIT_CACHE_STAGE", "").strip().lower()
    if choice in {"1", "true", "yes"}:
        return True
    if choice in {"0", "false", "no"}:
        return False
    if choice:
        raise UsageError(f"SHIPIT_CACHE_STAGE={choice[:20]!r}: use 1 or 0")
    return bool(env.get("CI")) or bool(cache_from)


def resolve_build_settings(
    options: BuildOptions,
    config: FileConfig,
    cwd: Path,
    env: Mapping[str, str],
    *,
    extra_tags: Sequence[str] = (),
    now: datetime | None = None,
) -> BuildSettings:
    """Validate every input before the engine is contacted (where each value comes from:
    shipit.settings; `env` is the environment the command read once)."""
    context = context_dir(options.context, config, cwd)
    if not context.is_dir():
        raise UsageError(
            f"build context '{options.context or context}' does not exist or is not a directory"
        )
    dockerfile = dockerfile_path(options.dockerfile, config, cwd, context)
    cli_args = parse_build_args(options.build_args, env)
    user_labels = parse_pairs(options.labels, "--label")
    image = select_image(options.image, config, context, extra_tags=extra_tags, env=env)

    build_args = _with_app_args({**config.build_args, **cli_args}, dockerfile, image)

    labels = {
        **project_labels(context),
        **config.labels,
        **oci_labels(image, env, now=now),
        **user_labels,
    }
    text = dockerfile.read_text(encoding="utf-8", errors="replace")
    warnings = _arg_warnings([*config.build_args, *cli_args], text)
    cache_from = tuple(options.cache_from or config.cache_from)
    builder, session = _builder_and_session(options, config, env, text, build_args, cache_from)
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
        cache_from=cache_from,
        warnings=warnings,
        cache_stage=CACHE_STAGE
        if not (options.target or config.target)
        and cache_stage_wanted(options.cache_stage, env, cache_from)
        and CACHE_STAGE in _stage_names(dockerfile)
        else None,
        builder=builder,
        session=session,
        context_transport=context_transport(env),
    )


def _with_app_args(
    build_args: dict[str, str], dockerfile: Path, image: ImageSelection
) -> dict[str, str]:
    """APP_VERSION and APP_REVISION filled in when the Dockerfile declares them and no
    --build-arg or config gave them."""
    declared = _declared_args(dockerfile)
    revision = image.git.sha if image.git else None
    if APP_VERSION_ARG in declared and APP_VERSION_ARG not in build_args:
        build_args[APP_VERSION_ARG] = image.version or (
            f"sha-{revision[:7]}" if revision else "dev"
        )
    if APP_REVISION_ARG in declared and APP_REVISION_ARG not in build_args and revision:
        build_args[APP_REVISION_ARG] = revision
    return build_args


def _arg_warnings(given: Sequence[str], dockerfile_text: str) -> tuple[str, ...]:
    """Build args that look like secrets (history keeps them) or that no ARG declares (a typo
    builds with the default silently; BuildKit does not say so)."""
    from shipit.services.builders import unused_build_args

    names = list(dict.fromkeys(given))
    secret_like = [
        f"build arg '{key}' looks like a secret: build args are stored in the image history "
        f"(docker history shows them); pass it with --secret id={key},env={key} and read it "
        f"in a RUN --mount=type=secret,id={key} step"
        for key in names
        if SECRET_NAME_RE.search(key)
    ]
    unused = [
        f"build arg '{key}' is not used: the Dockerfile declares no ARG {key}"
        for key in unused_build_args(names, dockerfile_text, ignore=_OWN_ARGS)
    ]
    return (*secret_like, *unused)


_OWN_ARGS = (APP_VERSION_ARG, APP_REVISION_ARG)


def _builder_and_session(
    options: BuildOptions,
    config: FileConfig,
    env: Mapping[str, str],
    dockerfile_text: str,
    build_args: Mapping[str, str],
    cache_from: Sequence[str],
) -> tuple[str | None, SessionPlan]:
    """The builder asked for, and what a BuildKit session would serve; every --secret and
    --ssh source is checked here, before the engine is called."""
    from shipit.adapters.engine.buildkit.secrets import SecretSource
    from shipit.adapters.engine.buildkit.sshforward import AgentSource
    from shipit.services.builders import LEGACY, plan_session, requested_builder

    builder = requested_builder(env, config.builder)
    secrets = [SecretSource.parse(spec, env) for spec in options.secrets]
    for source in secrets:
        source.read(env)  # a missing file or variable is a usage error now
    ssh = [AgentSource.parse(spec, env) for spec in options.ssh]
    if builder == LEGACY and (secrets or ssh):
        raise UsageError(
            '--secret and --ssh need BuildKit, but DOCKER_BUILDKIT=0 or builder = "legacy" '
            "selects the legacy builder"
        )
    refs = [r for ref in cache_from for r in (ref, cache_image_ref(ref))]
    plan = plan_session(
        dockerfile_text,
        build_args=build_args,
        cache_from=refs,
        secrets=secrets,
        ssh=ssh,
        env=env,
        always=env.get("SHIPIT_BUILD_SESSION", "") == "1",
    )
    return builder, plan


CREATED_LABEL = "org.opencontainers.image.created"


def project_labels(context: Path) -> dict[str, str]:
    """description, url and licenses from the build context's own pyproject.toml [project].

    Only the context's own project counts: a pyproject.toml further up (the repository's
    tooling, say) describes something else than the image.
    """
    import tomllib

    path = context / "pyproject.toml"
    try:
        with path.open("rb") as fh:
            project = tomllib.load(fh).get("project")
    except (OSError, tomllib.TOMLDecodeError):
        return {}
    if not isinstance(project, dict):
        return {}
    labels: dict[str, str] = {}
    if isinstance(project.get("description"), str) and project["description"].strip():
        labels["org.opencontainers.image.description"] = project["description"].strip()
    urls = project.get("urls")
    if not isinstance(urls, dict):
        urls = {}
    for key in ("Homepage", "homepage", "Documentation", "Repository", "Source"):
        if isinstance(urls.get(key), str):
            labels["org.opencontainers.image.url"] = urls[key]
            break
    license_ = project.get("license")
    if isinstance(license_, dict):
        license_ = license_.get("text")
    if isinstance(license_, str) and license_.strip() and "\n" not in license_.strip():
        labels["org.opencontainers.image.licenses"] = license_.strip()
    return labels


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
        source = source_url(image.git.remote_url) if image.git.remote_url else None
        if source:
            labels["org.opencontainers.image.source"] = source
    return labels


def build_image(settings: BuildSettings, engine: Engine, reporter: Reporter) -> BuildResult:
    """Send the context, build, apply every tag; the Python API behind `shipit build`."""
    from shipit.context import create_context_archive
    from shipit.services.builders import (
        BUILDKIT,
        SYNC,
        choose_builder,
        pick_transport,
        scan_context,
    )

    for warning in settings.warnings:
        reporter.warn(warning)
    choice = choose_builder(settings.builder, engine.version())
    if choice.note:
        reporter.info(choice.note)
    reporter.detail(f"builder: {choice.kind} ({choice.reason})")
    if choice.kind != BUILDKIT and (settings.session.secrets or settings.session.ssh):
        raise UsageError(f"--secret and --ssh need BuildKit: {choice.reason}")
    image = settings.image
    transport = None
    if choice.kind == BUILDKIT:
        facts = scan_context(settings.context, settings.dockerfile)
        transport, why = pick_transport(settings.context_transport, facts, settings.session.needed)
        reporter.detail(
            f"context sent {'through file sync' if transport == SYNC else 'as a tar'}: {why}"
        )
    if transport == SYNC:
        labels = _context_labels(settings, facts, reporter)
        image_id = _build_buildkit(settings, engine, reporter, None, labels)
    else:
        with create_context_archive(settings.context, settings.dockerfile) as archive:
            labels = _context_labels(settings, archive, reporter)
            if choice.kind == BUILDKIT:
                image_id = _build_buildkit(settings, engine, reporter, archive, labels)
            else:
                image_id = _build_legacy(settings, engine, reporter, archive, labels)
    if settings.platform:
        _check_platform(settings, engine, image_id)
    for tag in image.tags[1:]:
        engine.tag(image_id, image.name, tag)
    info = engine.require_image(image_id)
    return BuildResult(name=image.name, image_id=info.id, tags=image.tags, size_bytes=info.size)


def _context_labels(settings: BuildSettings, archive: Any, reporter: Reporter) -> dict[str, str]:
    """Warn about secret-looking files sent; the labels with `created` from the context.
    ``archive`` is the context tar, or what a scan found when file sync sends the files."""
    if archive.secret_like:
        shown = ", ".join(archive.secret_like[:8])
        more = f" and {len(archive.secret_like) - 8} more" if len(archive.secret_like) > 8 else ""
        reporter.warn(
            f"the build context sends files that look secret: {shown}{more}; "
            f"add them to {settings.context.name}/.dockerignore"
        )
    reporter.detail(
        f"context {settings.context}: {archive.file_count} files, {archive.size_bytes} bytes"
    )
    labels = dict(settings.labels)
    if CREATED_LABEL not in labels:
        newest = archive.newest_mtime or int(time.time())
        labels[CREATED_LABEL] = _rfc3339(datetime.fromtimestamp(newest, tz=UTC))
    return labels


def _build_buildkit(
    settings: BuildSettings,
    engine: Engine,
    reporter: Reporter,
    archive: Any,
    labels: Mapping[str, str],
) -> str:
    """BuildKit: the final image first (with --no-cache only it skips the cache; the builder
    stage's request then reuses what it just built), every image with inline cache metadata,
    --cache-from handed to the engine (it fetches only what it reuses), no pulls here. With
    ``archive`` None the context goes through the session's file sync."""
    from shipit.adapters.engine.buildkit.build import network_mode
    from shipit.services.builders import INLINE_CACHE, BuildKitStage, build_stages

    image = settings.image
    stages = [BuildKitStage(settings.target, f"{image.name}:{image.tags[0]}", settings.no_cache)]
    if settings.cache_stage:
        stages.append(BuildKitStage(settings.cache_stage, f"{image.name}:{CACHE_TAG}"))
    request: dict[str, Any] = {
        "buildargs": {**settings.build_args, **INLINE_CACHE},
        "labels": dict(labels),
        "pull": settings.pull,
        "platform": settings.platform,
        "networkmode": network_mode(settings.network),
    }
    run = partial(
        build_stages,
        stages,
        engine=engine,
        reporter=reporter,
        plan=settings.session,
        cache_sources=settings.cache_from,
        own_cache_sources=[cache_image_ref(ref) for ref in settings.cache_from],
        on_first_step=settings.on_first_step,
    )
    if archive is not None:
        return run({**request, "dockerfile": archive.dockerfile}, fileobj=archive.fileobj)[0]
    return _build_synced(settings, request, run, reporter)


def _build_synced(
    settings: BuildSettings, request: dict[str, Any], run: Any, reporter: Reporter
) -> str:
    """The context served by file sync: the engine asks for what changed since its last build
    of this directory. A file that vanished or changed mid-sync fails with shipit's message."""
    from shipit.adapters.engine.buildkit.filesync import build_shared_key, sync_context
    from shipit.errors import BuildError
    from shipit.services.builders import build_node_id

    synced = sync_context(settings.context, settings.dockerfile)
    key = build_shared_key(
        settings.context, build_node_id(settings.session.env), settings.context_key
    )
    try:
        image_ids = run(
            {**request, "dockerfile": synced.dockerfile, "remote": "client-session"},
            fileobj=None,
            extra_providers=[synced.provider],
            session_name=settings.context.name,
            shared_key=key,
        )
    except BuildError as exc:
        failure = synced.provider.failure
        if failure is not None:
            raise failure from exc
        raise
    reporter.detail(synced.provider.summary())
    return str(image_ids[0])


def _build_legacy(
    settings: BuildSettings,
    engine: Engine,
    reporter: Reporter,
    archive: Any,
    labels: Mapping[str, str],
) -> str:
    """The legacy builder: --cache-from images pulled first, the builder stage first."""
    image = settings.image
    cache_from = list(settings.cache_from)
    if cache_from:
        cache_from = _pull_cache_images(cache_from, engine, reporter)
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
    return image_id


def _check_platform(settings: BuildSettings, engine: Engine, image_id: str) -> None:
    """Never leave a silent native image: a build for another platform than asked is untagged
    and fails (the legacy builder builds a local base image's platform without a word)."""
    from shipit.errors import BuildError
    from shipit.services.builders import check_platform

    assert settings.platform is not None
    info = engine.require_image(image_id)
    try:
        check_platform(settings.platform, info.raw)
    except BuildError:
        engine.remove_image(f"{settings.image.name}:{settings.image.tags[0]}")
        raise


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
            reporter.warn(f"cache image {reference} is not available; building without it")
    return usable
