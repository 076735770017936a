"""Multi-platform images: build one image per platform, push each, and publish every tag as one
image index; or, in a CI matrix, push one platform per runner and join them afterwards.

The engine's image store holds one platform per tag, so each platform's image lives under
platform-suffixed tags (`NAME:1.2.3-linux-arm64`), locally and in the registry; the plain tags
(`NAME:1.2.3`) exist only in the registry, as indexes pointing at those images.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from typing import TypeVar

from shipit.adapters.engine.client import Engine
from shipit.adapters.image_index import INDEX_TYPES, Entry, IndexReader, build_index, publish_index
from shipit.adapters.oci import RegistryClient
from shipit.errors import BuildError, RegistryError, ShipitError, UsageError
from shipit.model import ImageInfo
from shipit.output.reporter import Reporter
from shipit.platforms import (
    Emulation,
    Platform,
    check_buildable,
    image_platform,
    is_local_engine,
    platform_tag,
    runs_natively,
)
from shipit.services.build import BuildResult, BuildSettings, ImageSelection
from shipit.services.concurrency import Background, HeadStart
from shipit.services.concurrency import run_concurrently as run_jobs
from shipit.services.push import Pushed, PushSettings, push_image
from shipit.services.registries import Destination
from shipit.services.retry import call_with_retry
from shipit.services.tags import is_release_tag

T = TypeVar("T")

LEGACY_BUILDER_HINT = (
    "the engine's builder ignored the platform (the legacy builder does): build with BuildKit "
    "(unset DOCKER_BUILDKIT=0), or on a runner of that architecture"
)


@dataclass(frozen=True)
class PlatformImage:
    """One platform's local image of a multi-platform build."""

    platform: Platform
    image_id: str
    references: tuple[str, ...]  # NAME:TAG-linux-arm64, ...
    size_bytes: int
    declared: Platform  # what the image config says

    def as_json(self) -> dict[str, object]:
        return {
            "platform": str(self.platform),
            "image_id": self.image_id,
            "os": self.declared.os,
            "architecture": self.declared.architecture,
            "variant": self.declared.variant,
            "tags": list(self.references),
            "size_bytes": self.size_bytes,
        }


@dataclass(frozen=True)
class MultiBuildResult:
    """What a multi-platform `shipit build` produced; `as_json()` is its --json object."""

    name: str
    tags: tuple[str, ...]
    images: tuple[PlatformImage, ...]

    def as_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "tags": [f"{self.name}:{t}" for t in self.tags],
            "platforms": [i.as_json() for i in self.images],
        }


@dataclass(frozen=True)
class MultiPushResult:
    """Each tag's index (`pushed`) and each platform's image pushes (`platform_images`)."""

    pushed: list[Pushed]
    platform_images: list[tuple[Platform, Pushed]]

    def as_json(self) -> dict[str, object]:
        return {
            "pushed": [p.as_json() for p in self.pushed],
            "platform_images": [
                {"platform": str(platform), **p.as_json()} for platform, p in self.platform_images
            ],
        }


def platform_selection(selection: ImageSelection, platform: Platform) -> ImageSelection:
    """The same image selection with every tag suffixed by the platform."""
    return replace(selection, tags=tuple(platform_tag(t, platform) for t in selection.tags))


# ---------------------------------------------------------------- build


def require_buildable(platforms: Sequence[Platform], engine: Engine) -> None:
    """Fail (exit 5, with a QEMU hint) before building for a platform nothing can run here."""
    version = engine.version()
    emulation = Emulation.read() if is_local_engine(engine.host) else None
    check_buildable(
        platforms,
        engine_os=str(version.get("Os") or "linux"),
        engine_arch=str(version.get("Arch") or "amd64"),
        emulation=emulation,
    )


# The longest the native builds wait for the emulated ones to get under way.
HEAD_START_LIMIT = 1.0


def start_order(platforms: Sequence[Platform], engine: Engine) -> HeadStart:
    """The order to start the builds in: the engine's own platforms start once the emulated
    ones (the slow builds, a release's critical path) have begun their first step, so those
    get the engine and the CPU first; all at once when every platform is native or emulated."""
    arch = str(engine.version().get("Arch") or "amd64")
    emulated = [str(p) for p in platforms if not runs_natively(p, arch)]
    return HeadStart(emulated if len(emulated) < len(platforms) else [], limit=HEAD_START_LIMIT)


BuildFn = Callable[[BuildSettings, Engine, Reporter], BuildResult]


def build_platforms(
    settings: BuildSettings,
    platforms: Sequence[Platform],
    engine: Engine,
    reporter: Reporter,
    build: BuildFn,
) -> MultiBuildResult:
    """Build every platform (concurrently) under platform-suffixed tags; check each image's
    declared platform, so a builder that ignores --platform never passes for a multi build."""
    require_buildable(platforms, engine)
    order = start_order(platforms, engine)
    # One builder-stage cache tag cannot hold several platforms.
    base = replace(settings, cache_stage=None)
    alone = len(platforms) == 1
    images = run_concurrently(
        [
            _named(
                str(p),
                partial(
                    _build_one, base, p, engine, platform_reporter(reporter, p, alone), build,
                    order,
                ),
            )
            for p in platforms
        ]
    )  # fmt: skip
    return MultiBuildResult(
        name=settings.image.name, tags=settings.image.tags, images=tuple(images)
    )


def _build_one(
    settings: BuildSettings,
    platform: Platform,
    engine: Engine,
    reporter: Reporter,
    build: BuildFn,
    order: HeadStart,
) -> PlatformImage:
    """One platform's build, under its own context key; an emulated one signals `order` when
    under way, a native one waits for that first."""
    key = str(platform)
    selection = platform_selection(settings.image, platform)
    own = replace(settings, image=selection, platform=key, context_key=key)
    if order.leads(key):
        own = replace(own, on_first_step=partial(order.under_way, key))
    else:
        order.wait()
    try:
        result = build(own, engine, reporter)
    finally:
        order.under_way(key)
    info = engine.require_image(result.image_id)
    declared = image_platform(info.raw)
    if not platform.matches(declared.os, declared.architecture, declared.variant):
        raise BuildError(
            f"asked for a {platform} image, the engine built a {declared} one",
            hint=LEGACY_BUILDER_HINT,
        )
    return PlatformImage(
        platform=platform,
        image_id=info.id,
        references=tuple(selection.references),
        size_bytes=info.size,
        declared=declared,
    )


# ---------------------------------------------------------------- local images


def local_platform_image(
    engine: Engine, selection: ImageSelection, platform: Platform, *, adopt: bool
) -> ImageInfo:
    """The local image of one platform: NAME:TAG-<platform> for every tag.

    With `adopt` (one platform pushed by itself, the CI-matrix case) the plain NAME:TAG that a
    single-platform `shipit build --platform X` made is used when it is an image of that
    platform (it is the newest build of it), and given the suffixed tags.
    """
    suffixed = platform_selection(selection, platform)
    wanted = None
    if adopt:
        plain = engine.image(selection.references[0])
        if plain is not None and _is_platform(plain, platform):
            wanted = plain
            for tag in suffixed.tags:
                engine.tag(plain.id, selection.name, tag)
        elif plain is not None and engine.image(suffixed.references[0]) is None:
            _require_platform(plain, platform, selection.references[0])
    wanted = wanted or engine.image(suffixed.references[0])
    if wanted is None:
        raise UsageError(
            f"image '{suffixed.references[0]}' does not exist locally: "
            f"run 'shipit build --platform {platform}' first"
        )
    for reference in suffixed.references:
        info = engine.image(reference)
        if info is None or info.id != wanted.id:
            raise UsageError(
                f"{reference} is missing or a different image from {suffixed.references[0]}: "
                f"run 'shipit build --platform {platform}' again"
            )
    _require_platform(wanted, platform, suffixed.references[0])
    return wanted


def require_platform_image(engine: Engine, reference: str, platform: Platform) -> None:
    """A local image that exists must be of `platform` (a missing one is the push's to report)."""
    info = engine.image(reference)
    if info is not None:
        _require_platform(info, platform, reference)


def _is_platform(info: ImageInfo, platform: Platform) -> bool:
    declared = image_platform(info.raw)
    return platform.matches(declared.os, declared.architecture, declared.variant)


def _require_platform(info: ImageInfo, platform: Platform, reference: str) -> None:
    declared = image_platform(info.raw)
    if not platform.matches(declared.os, declared.architecture, declared.variant):
        raise UsageError(
            f"{reference} is a {declared} image, not {platform}: "
            f"build it with 'shipit build --platform {platform}'"
        )


# ---------------------------------------------------------------- push and join


RegistryClientFactory = Callable[..., RegistryClient]


@dataclass
class _Run:
    """One multi-platform push: its reporter, settings and one registry client per destination."""

    reporter: Reporter
    settings: PushSettings
    new_client: RegistryClientFactory = RegistryClient
    clients: dict[str, tuple[RegistryClient, str, str]] = field(default_factory=dict)
    # With an engine, each published index is also read back through the engine's
    # distribution inspect, as every single-platform push is; the join needs none.
    engine: Engine | None = None
    # Index entries read as soon as each platform was pushed: (registry, tag, platform) -> entry.
    entries: dict[tuple[str, str, str], Entry] = field(default_factory=dict)
    # One lock per destination: each is prepared once, and the registries side by side.
    _locks: dict[str, threading.Lock] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def served_digest(self, client: RegistryClient, path: str, reference: str, tag: str) -> str:
        """The digest a tag serves now: the engine's answer when there is one, else the API's."""
        if self.engine is not None:
            return self.engine.distribution_digest(reference, client.auth)
        served = IndexReader(client, path).manifest(tag)
        return served.digest if served is not None else "nothing"

    def registry(self, destination: Destination, name: str) -> tuple[RegistryClient, str, str]:
        """(client, HOST/REPO, REPO) for a destination, prepared and logged in once per run."""
        with self._lock:
            lock = self._locks.setdefault(destination.label, threading.Lock())
        with lock:
            if destination.label not in self.clients:
                destination.prepare(name, self.reporter)
                auth = destination.authenticate(self.reporter)
                repository = destination.repository(name)
                client = self.new_client(
                    destination.host, auth, timeout=self.settings.stall_seconds
                )
                self.clients[destination.label] = (client, repository, repository.partition("/")[2])
            return self.clients[destination.label]

    def entry(
        self, destination: Destination, reader: IndexReader, tag: str, platform: Platform
    ) -> Entry:
        """The index entry of `platform`'s image under `tag` there: read once, with retries."""
        key = (destination.label, tag, str(platform))
        if key not in self.entries:
            reference = platform_tag(tag, platform)
            found = self.retry(partial(reader.entry, reference, platform), destination)
            self.entries[key] = found
        return self.entries[key]

    def settle(self, destinations: Sequence[Destination], name: str) -> None:
        """Reach each registry once (GET /v2/), so HTTPS or the engine's insecure fallback is
        settled before the requests that count; a failure is left for them to report."""
        for destination in destinations:
            client = self.registry(destination, name)[0]
            try:
                self.retry(client.ping, destination)
            except RegistryError:
                continue

    def prefetch(
        self, destinations: Sequence[Destination], selection: ImageSelection, platform: Platform
    ) -> None:
        """Read `platform`'s entries right after its push, while slower platforms still build,
        so the index is published without them; a failure here is left for the join to report."""
        for destination in destinations:
            client, _, path = self.registry(destination, selection.name)
            reader = IndexReader(client, path)
            for tag in selection.tags:
                try:
                    self.entry(destination, reader, tag, platform)
                except RegistryError:
                    break  # this registry's join reads it again and reports

    def retry(self, fn: Callable[[], T], destination: Destination) -> T:
        def on_retry(attempt: int, error: RegistryError, delay: float) -> None:
            self.reporter.warn(
                f"{destination.label}: {error.kind} ({error.message}); "
                f"retry {attempt} in {delay:.1f}s"
            )

        return call_with_retry(fn, self.settings.retry, on_retry=on_retry)


def push_platforms(
    selection: ImageSelection,
    platforms: Sequence[Platform],
    destinations: Sequence[Destination],
    engine: Engine,
    reporter: Reporter,
    settings: PushSettings,
    *,
    platform_only: bool = False,
    registry_client: RegistryClientFactory = RegistryClient,
    built: bool = True,
) -> MultiPushResult:
    """Push each platform's image under its suffixed tags, then (unless `platform_only`)
    publish every tag as one index of them all; the Python API behind a multi-platform push.

    `built=False` (a release dry run) plans without requiring the images to exist yet."""
    if settings.push_cache:
        raise UsageError("--push-cache works with single-platform builds only")
    if settings.dry_run and not built:
        return _dry_run(selection, platforms, destinations, reporter, platform_only=platform_only)
    images = {
        p: local_platform_image(engine, selection, p, adopt=platform_only and len(platforms) == 1)
        for p in platforms
    }
    if settings.dry_run:
        return _dry_run(selection, platforms, destinations, reporter, platform_only=platform_only)
    run = _Run(reporter, settings, registry_client, engine=engine)
    # Each registry is prepared (an ECR repository created) once, before the platforms' pushes
    # run side by side; release tags are checked against the index before anything is pushed.
    guard = partial(_guard, run, check=not platform_only)
    with reporter.phase("Prepare registries" if platform_only else "Check release tags"):
        found = run_concurrently(
            [_named(d.label, partial(guard, d, selection, images)) for d in destinations]
        )
    unchanged = {d.label: u for d, u in zip(destinations, found, strict=True)}
    push = partial(push_image, engine=engine, settings=settings, registry_client=registry_client)
    if platform_only:
        platform_images = _push_each_platform(push, selection, platforms, destinations, reporter)
        return MultiPushResult(pushed=[], platform_images=platform_images)
    # While the platforms push, each registry is reached once; each platform's index entries
    # are read as soon as its push ends, so the index is published right after the last one.
    settled = Background(partial(run.settle, destinations, selection.name), name="shipit-settle")

    def after(platform: Platform) -> None:
        settled.wait()
        run.prefetch(destinations, selection, platform)

    platform_images = _push_each_platform(
        push, selection, platforms, destinations, reporter, after=after
    )
    settled.wait()
    with reporter.phase("Publish image indexes"):
        pushed = _join_all(run, selection, platforms, destinations, unchanged)
    return MultiPushResult(pushed=pushed, platform_images=platform_images)


def _push_each_platform(
    push: Callable[..., list[Pushed]],
    selection: ImageSelection,
    platforms: Sequence[Platform],
    destinations: Sequence[Destination],
    reporter: Reporter,
    *,
    after: Callable[[Platform], None] | None = None,
) -> list[tuple[Platform, Pushed]]:
    """Each platform's image pushed under its suffixed tags, the platforms side by side;
    `after(platform)` runs in its job once its push has ended."""
    alone = len(platforms) == 1

    def job(platform: Platform) -> list[Pushed]:
        view = platform_reporter(reporter, platform, alone)
        pushed = push(platform_selection(selection, platform), destinations, reporter=view)
        if after is not None:
            after(platform)
        return pushed

    per_platform = run_concurrently([_named(str(p), partial(job, p)) for p in platforms])
    return [
        (p, pushed) for p, group in zip(platforms, per_platform, strict=True) for pushed in group
    ]


def release_platforms(
    settings: BuildSettings,
    platforms: Sequence[Platform],
    destinations: Sequence[Destination],
    engine: Engine,
    reporter: Reporter,
    push_settings: PushSettings,
    *,
    build: BuildFn,
    registry_client: RegistryClientFactory = RegistryClient,
) -> tuple[MultiBuildResult, MultiPushResult]:
    """Build and push every platform, then publish the indexes; the Python API behind a
    multi-platform release without --smoke.

    The registries are prepared and their release tags checked while the platforms build.
    When no release tag exists yet (or --allow-overwrite), each platform is pushed as soon as
    it is built, while a slower one (emulated) still builds; otherwise nothing is pushed until
    every platform is built, so the index check can compare images first. A registry that
    fails the check fails the release once the builds have ended, as a single-platform
    release finds it at its push.
    """
    if push_settings.push_cache:
        raise UsageError("--push-cache works with single-platform builds only")
    require_buildable(platforms, engine)
    order = start_order(platforms, engine)
    selection = settings.image
    run = _Run(reporter, push_settings, registry_client, engine=engine)
    guarded = Background(
        partial(_guarded_release, run, destinations, selection), name="shipit-registries"
    )
    base = replace(settings, cache_stage=None)
    alone = len(platforms) == 1
    push = partial(push_image, registry_client=registry_client)

    def pipeline(platform: Platform, view: Reporter) -> tuple[PlatformImage, list[Pushed]]:
        image = _build_one(base, platform, engine, view, build, order)
        if not guarded.wait() or guarded.result():
            return image, []
        pushed = push(platform_selection(selection, platform), destinations, engine, view,
                      push_settings)  # fmt: skip
        run.prefetch(destinations, selection, platform)
        return image, pushed

    done = run_concurrently(
        [
            _named(str(p), partial(pipeline, p, platform_reporter(reporter, p, alone)))
            for p in platforms
        ]
    )
    built = MultiBuildResult(selection.name, selection.tags, tuple(image for image, _ in done))
    if guarded.result():  # a release tag exists: compare, then push (or refuse)
        pushed = push_platforms(
            selection, platforms, destinations, engine, reporter, push_settings,
            registry_client=registry_client,
        )  # fmt: skip
        return built, pushed
    platform_images = [(image.platform, p) for image, group in done for p in group]
    with reporter.phase("Publish image indexes"):
        indexes = _join_all(run, selection, platforms, destinations, {})
    return built, MultiPushResult(pushed=indexes, platform_images=platform_images)


def _guarded_release(
    run: _Run, destinations: Sequence[Destination], selection: ImageSelection
) -> bool:
    """Whether the pushes must wait until every platform is built: a release tag of the
    selection exists at some destination and --allow-overwrite is not given (each registry
    prepared, logged in and reached once on the way)."""
    existing = run_jobs(
        [_named(d.label, partial(_release_tags_present, run, d, selection)) for d in destinations],
        name="shipit-registry",
    )
    return any(existing) and not run.settings.allow_overwrite


def _release_tags_present(run: _Run, destination: Destination, selection: ImageSelection) -> bool:
    """Whether any release tag of the selection already exists there (the registry prepared)."""
    client, _, path = run.registry(destination, selection.name)
    reader = IndexReader(client, path)
    release_tags = [tag for tag in selection.tags if is_release_tag(tag)]
    if not release_tags:  # reach it anyway: HTTPS or the insecure fallback is settled now
        run.settle([destination], selection.name)
    return any(
        run.retry(partial(reader.manifest, tag), destination) is not None for tag in release_tags
    )


def merge_platforms(
    selection: ImageSelection,
    platforms: Sequence[Platform],
    destinations: Sequence[Destination],
    reporter: Reporter,
    settings: PushSettings,
    *,
    registry_client: RegistryClientFactory = RegistryClient,
) -> MultiPushResult:
    """Join platform images pushed earlier (NAME:TAG-<platform>, one CI runner each) into one
    index per tag; needs no engine. Idempotent; refuses an image of the wrong platform."""
    if len(platforms) < 1:
        raise UsageError("--merge needs the platforms to join: --platform linux/amd64,linux/arm64")
    if settings.dry_run:
        return _dry_run(selection, platforms, destinations, reporter, platform_only=False)
    run = _Run(reporter, settings, registry_client)
    with reporter.phase("Publish image indexes"):
        pushed = _join_all(run, selection, platforms, destinations, {})
    return MultiPushResult(pushed=pushed, platform_images=[])


def _join_all(
    run: _Run,
    selection: ImageSelection,
    platforms: Sequence[Platform],
    destinations: Sequence[Destination],
    unchanged: dict[str, dict[str, str]],
) -> list[Pushed]:
    groups = run_concurrently(
        [
            _named(
                d.label,
                partial(_join, run, d, selection, platforms, unchanged.get(d.label, {})),
            )
            for d in destinations
        ]
    )
    return [p for group in groups for p in group]


def _guard(
    run: _Run,
    destination: Destination,
    selection: ImageSelection,
    images: dict[Platform, ImageInfo],
    *,
    check: bool = True,
) -> dict[str, str]:
    """Before anything is pushed: a release tag that already holds an index of exactly these
    images is left as it is (its digest returned); one holding anything else is refused.
    With `check` False the registry is only prepared."""
    client, repository, path = run.registry(destination, selection.name)
    reader = IndexReader(client, path)
    wanted = [(p, info.id) for p, info in images.items()]
    unchanged: dict[str, str] = {}
    for tag in selection.tags:
        if not check or not is_release_tag(tag):
            continue
        same = run.retry(partial(reader.same_images, tag, wanted), destination)
        if same is None:
            continue
        if same:
            existing = reader.manifest(tag)
            unchanged[tag] = existing.digest if existing else ""
        elif not run.settings.allow_overwrite:
            raise RegistryError(
                f"release tag {repository}:{tag} already exists with different images; "
                "refusing to overwrite it",
                hint="release a new version, or pass --allow-overwrite to replace it on purpose",
                kind="overwrite_refused",
            )
    return unchanged


def _join(
    run: _Run,
    destination: Destination,
    selection: ImageSelection,
    platforms: Sequence[Platform],
    unchanged: dict[str, str],
) -> list[Pushed]:
    """Publish each tag's index at one registry, verified by reading the tag back."""
    client, repository, path = run.registry(destination, selection.name)
    reader = IndexReader(client, path)
    results: list[Pushed] = []
    for tag in selection.tags:
        reference = f"{repository}:{tag}"
        if tag in unchanged:
            run.reporter.info(f"{reference} is already up to date ({unchanged[tag][:19]})")
            results.append(Pushed(destination.label, reference, unchanged[tag], "unchanged"))
            continue
        entries = [run.entry(destination, reader, tag, p) for p in platforms]
        index = build_index(entries)
        protect = is_release_tag(tag) and not run.settings.allow_overwrite
        status = run.retry(
            partial(publish_index, client, path, tag, index, protect=protect), destination
        )
        served = run.retry(partial(run.served_digest, client, path, reference, tag), destination)
        if served != index.digest:
            raise RegistryError(
                f"{reference}: the registry serves {served} but the index pushed was {index.digest}",
                hint="another push may have moved the tag at the same time; push again",
                kind="digest_mismatch",
            )
        shown = ", ".join(str(p) for p in platforms)
        if status == "unchanged":
            run.reporter.info(f"{reference} is already up to date ({index.digest[:19]})")
        else:
            run.reporter.info(f"published {reference}@{index.digest} ({shown})")
        results.append(Pushed(destination.label, reference, index.digest, status))
    return results


def _dry_run(
    selection: ImageSelection,
    platforms: Sequence[Platform],
    destinations: Sequence[Destination],
    reporter: Reporter,
    *,
    platform_only: bool,
) -> MultiPushResult:
    pushed: list[Pushed] = []
    platform_images: list[tuple[Platform, Pushed]] = []
    for destination in destinations:
        repository = destination.repository(selection.name)
        for tag in selection.tags:
            for platform in platforms:
                reference = f"{repository}:{platform_tag(tag, platform)}"
                if platform_only:
                    reporter.info(f"would push {reference}")
                    platform_images.append(
                        (platform, Pushed(destination.label, reference, "", "planned"))
                    )
            if not platform_only:
                reference = f"{repository}:{tag}"
                shown = ", ".join(str(p) for p in platforms)
                reporter.info(f"would publish {reference} as an index of {shown}")
                pushed.append(Pushed(destination.label, reference, "", "planned"))
    return MultiPushResult(pushed=pushed, platform_images=platform_images)


# ---------------------------------------------------------------- concurrency


class PlatformReporter(Reporter):
    """The reporter of one platform's job among several running side by side: plain lines
    (one live view at a time only) prefixed with the platform, on the same streams and with
    the same masks as the command's reporter."""

    def __init__(self, parent: Reporter, platform: Platform):
        super().__init__(replace(parent.mode, live=False), stdout=parent.out, stderr=parent.err)
        self._masked = parent._masked  # one set: a secret masked by either is masked by both
        self.platform = platform

    def _line(self, text: str, *, hold: bool = False) -> None:
        super()._line(f"[{self.platform}] {text}", hold=hold)


def platform_reporter(reporter: Reporter, platform: Platform, alone: bool) -> Reporter:
    """The command's own reporter for a job that runs alone, else a PlatformReporter."""
    return reporter if alone else PlatformReporter(reporter, platform)


def _named(label: str, job: Callable[[], T]) -> Callable[[], T]:
    """A job whose failures name the platform or registry they happened at."""

    def run() -> T:
        try:
            return job()
        except ShipitError as exc:
            if not exc.message.startswith(label):
                exc.message = f"{label}: {exc.message}"
            raise

    return run


def run_concurrently(jobs: list[Callable[[], T]]) -> list[T]:
    """Run the platforms' jobs side by side (threads shipit-platform-N): see concurrency."""
    return run_jobs(jobs, name="shipit-platform")


# ---------------------------------------------------------------- smoke and inspect


def platform_reference(engine: Engine, reference: str, platform: Platform) -> str:
    """The local image of `platform` for NAME:TAG: NAME:TAG-<platform> after a multi-platform
    build, else NAME:TAG itself when it is an image of that platform."""
    name, _, tag = reference.rpartition(":")
    suffixed = f"{name}:{platform_tag(tag, platform)}"
    if engine.image(suffixed) is not None:
        return suffixed
    plain = engine.image(reference)
    if plain is None:
        raise UsageError(
            f"neither {suffixed} nor {reference} exists locally: "
            f"run 'shipit build --platform {platform}' first"
        )
    _require_platform(plain, platform, reference)
    return reference


@dataclass(frozen=True)
class RemoteImage:
    """What a registry serves for one tag: its digest, kind and the platforms it holds."""

    reference: str
    digest: str
    media_type: str
    platforms: list[Entry]

    def as_json(self) -> dict[str, object]:
        return {
            "reference": self.reference,
            "digest": self.digest,
            "media_type": self.media_type,
            "index": self.media_type in INDEX_TYPES,
            "platforms": [e.as_json() for e in self.platforms],
        }


def inspect_remote(
    reference: str,
    env: Mapping[str, str],
    *,
    timeout: float = 30.0,
    registry_client: RegistryClientFactory = RegistryClient,
) -> RemoteImage:
    """Read HOST/REPO:TAG from its registry (credentials as `push` finds them for that host:
    SHIPIT_REGISTRY_USERNAME/PASSWORD, else the Docker config)."""
    from shipit.reference import looks_like_host
    from shipit.services.registries import host_credentials

    repository, tag = _split_reference(reference)
    host, _, path = repository.partition("/")
    if not path or not looks_like_host(host):
        raise UsageError(
            f"'{reference}' names no registry: give HOST/REPOSITORY:TAG, e.g. localhost:5000/app:1.2.3"
        )
    auth = host_credentials(host, env)
    reader = IndexReader(registry_client(host, auth, timeout=timeout), path)
    manifest = reader.manifest(tag)
    if manifest is None:
        raise RegistryError(f"{reference} does not exist in the registry", kind="not_found")
    return RemoteImage(reference, manifest.digest, manifest.media_type, reader.platforms(tag))


def _split_reference(reference: str) -> tuple[str, str]:
    if "@" in reference:
        repository, _, digest = reference.partition("@")
        return repository, digest
    repository, sep, tag = reference.rpartition(":")
    if not sep or "/" in tag:
        return reference, "latest"
    return repository, tag
