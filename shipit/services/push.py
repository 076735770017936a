"""`shipit push`: tag the built image for each registry, push it, and prove what landed.

Phase 1 (every registry, concurrently): create the repository if needed, authenticate, and
check that no release tag would be overwritten with a different image. Only when all of that
succeeds does phase 2 push; each tag's digest is then confirmed with the registry.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import TypeVar

from shipit.adapters.engine.client import Engine
from shipit.adapters.oci import Manifest, RegistryClient
from shipit.errors import AuthError, ImageNotFoundError, RegistryError, ShipitError, UsageError
from shipit.model import Auth, Event, ImageInfo, PushProgress
from shipit.output.reporter import Reporter
from shipit.services.build import ImageSelection
from shipit.services.concurrency import run_concurrently
from shipit.services.registries import Destination
from shipit.services.retry import DEFAULT_STALL_SECONDS, RetryPolicy, call_with_retry
from shipit.services.tags import is_release_tag

T = TypeVar("T")


@dataclass(frozen=True)
class PushSettings:
    """How to push: retry bounds, overwrite protection, dry run."""

    retry: RetryPolicy = field(default_factory=RetryPolicy)
    allow_overwrite: bool = False
    dry_run: bool = False
    stall_seconds: float = DEFAULT_STALL_SECONDS
    # Also push the builder-stage cache image (NAME:buildcache) for later --cache-from builds.
    push_cache: bool = False


@dataclass(frozen=True)
class Pushed:
    """One reference that now exists in a registry, with the digest the registry serves."""

    registry: str
    reference: str
    digest: str
    status: str  # pushed | tagged | unchanged

    def as_json(self) -> dict[str, str]:
        return {
            "registry": self.registry,
            "reference": self.reference,
            "digest": self.digest,
            "status": self.status,
        }


# Makes the registry HTTP client for (host, auth, timeout=...): the wiring's `Clients.registry`.
RegistryClientFactory = Callable[..., RegistryClient]


@dataclass
class _Plan:
    destination: Destination
    auth: Auth | None = None
    unchanged: dict[str, str] = field(default_factory=dict)  # tag -> digest already there
    client: RegistryClient | None = None
    path: str = ""  # the repository's path in the registry (NAMESPACE/NAME)
    new_client: RegistryClientFactory = RegistryClient


def local_image(engine: Engine, selection: ImageSelection) -> ImageInfo:
    """The built image; every selected tag must exist locally and name the same image."""
    first: ImageInfo | None = None
    for reference in selection.references:
        info = engine.require_image(reference)
        if first is None:
            first = info
        elif info.id != first.id:
            raise UsageError(
                f"{reference} is a different image from {selection.references[0]}: "
                "run 'shipit build' again so every tag names the same image"
            )
    assert first is not None
    return first


def push_image(
    selection: ImageSelection,
    destinations: Sequence[Destination],
    engine: Engine,
    reporter: Reporter,
    settings: PushSettings,
    *,
    built: bool = True,
    registry_client: RegistryClientFactory = RegistryClient,
) -> list[Pushed]:
    """Push every selected tag to every destination (concurrently); the Python API behind push.

    `built=False` (a release dry run) plans without requiring the image to exist yet.
    `registry_client(host, auth, timeout=...)` makes the registry HTTP client (the CLI passes
    the wiring's; tests pass a fake).
    """
    if settings.dry_run:
        if built:
            local_image(engine, selection)
        return _dry_run(selection, destinations, reporter)
    image = _checked_image(selection, destinations, engine, settings)
    with reporter.phase("Prepare registries"):
        plans = _parallel(
            [
                _labelled(
                    d,
                    partial(
                        _prepare, d, selection, image, engine, reporter, settings, registry_client
                    ),
                )
                for d in destinations
            ]
        )
    lock = threading.Lock()
    with reporter.phase("Push"), reporter.progress(f"Pushing {selection.name}") as view:

        def sink_for(label: str) -> Callable[[Event], None]:
            return _locked_sink(view.for_registry(label), lock)  # a line per registry

        outcomes = _settled(
            [
                _labelled(
                    p.destination,
                    partial(
                        _push,
                        p,
                        selection,
                        image,
                        engine,
                        reporter,
                        settings,
                        sink_for(p.destination.label),
                    ),
                )
                for p in plans
            ]
        )
    return _landed_or_raise(plans, outcomes)


def _checked_image(
    selection: ImageSelection,
    destinations: Sequence[Destination],
    engine: Engine,
    settings: PushSettings,
) -> ImageInfo:
    """The local image, once every reference is valid and the cache image (--push-cache)
    exists: before any side effect."""
    image = local_image(engine, selection)
    for destination in destinations:
        destination.repository(selection.name)
    if settings.push_cache:
        from shipit.services.build import CACHE_TAG

        cache = f"{selection.name}:{CACHE_TAG}"
        if engine.image(cache) is None:
            raise ImageNotFoundError(
                f"image '{cache}' (the builder stage, for --push-cache) does not exist locally",
                hint="shipit build makes it in CI or with --cache-from; elsewhere set "
                "SHIPIT_CACHE_STAGE=1 (the Dockerfile needs a stage named 'builder')",
            )
    return image


def _locked_sink(
    registry_view: Callable[[Event], None], lock: threading.Lock
) -> Callable[[Event], None]:
    """A registry's progress line, fed under one lock: the pushes run in threads."""

    def sink(event: Event) -> None:
        with lock:
            registry_view(event)

    return sink


def _landed_or_raise(
    plans: Sequence[_Plan], outcomes: Sequence[list[Pushed] | BaseException]
) -> list[Pushed]:
    """Everything pushed; or the first failure, carrying what landed and what failed (--json)."""
    landed = [p for outcome in outcomes if isinstance(outcome, list) for p in outcome]
    errors = [(plan, o) for plan, o in zip(plans, outcomes, strict=True) if not isinstance(o, list)]
    if not errors:
        return landed
    first = errors[0][1]
    if isinstance(first, ShipitError):
        partial_pushed = [
            p
            for _, e in errors
            if isinstance(e, ShipitError)
            for p in e.completed.get("pushed", [])
        ]
        first.completed = {
            "pushed": [p.as_json() for p in landed] + partial_pushed,
            "failed": [
                {
                    "registry": plan.destination.label,
                    "message": getattr(e, "message", str(e)),
                    "exit_code": getattr(e, "exit_code", 1),
                    "kind": getattr(e, "kind", "internal"),
                }
                for plan, e in errors
            ],
        }
    raise first


def _settled(jobs: list[Callable[[], T]]) -> list[T | BaseException]:
    """Run jobs concurrently (see `_parallel`); each one's result or the exception it raised.

    Ctrl-C and SIGTERM still end the run at once.
    """
    outcomes: list[T | BaseException] = []

    def settle(job: Callable[[], T]) -> Callable[[], T | BaseException]:
        def run() -> T | BaseException:
            try:
                return job()
            except Exception as exc:
                return exc

        return run

    outcomes = _parallel([settle(job) for job in jobs])
    return outcomes


def _labelled(destination: Destination, job: Callable[[], T]) -> Callable[[], T]:
    """A job whose failures name the registry they happened at."""

    def run() -> T:
        try:
            return job()
        except ShipitError as exc:
            if not exc.message.startswith(destination.label):
                exc.message = f"{destination.label}: {exc.message}"
            raise

    return run


def _parallel(jobs: list[Callable[[], T]]) -> list[T]:
    """Run the registries' jobs side by side (threads shipit-push-N): see concurrency."""
    return run_concurrently(jobs, name="shipit-push")


def _prepare(
    destination: Destination,
    selection: ImageSelection,
    image: ImageInfo,
    engine: Engine,
    reporter: Reporter,
    settings: PushSettings,
    registry_client: RegistryClientFactory,
) -> _Plan:
    destination.prepare(selection.name, reporter)
    auth = destination.authenticate(reporter)
    plan = _Plan(destination=destination, auth=auth, new_client=registry_client)
    host, _, path = destination.repository(selection.name).partition("/")
    plan.path = path
    for tag in selection.tags:
        if not is_release_tag(tag):
            continue
        existing = _with_retry(
            partial(_remote_manifest, plan, settings, path, tag),
            destination,
            plan,
            reporter,
            settings,
        )
        if existing is None:
            continue
        if existing.config_digest == image.id:
            plan.unchanged[tag] = existing.digest
        elif not settings.allow_overwrite:
            raise RegistryError(
                f"release tag {host}/{path}:{tag} already exists with a different image "
                f"({existing.digest}); refusing to overwrite it",
                hint="release a new version, or pass --allow-overwrite to replace it on purpose",
                kind="overwrite_refused",
            )
    return plan


def _client(plan: _Plan, settings: PushSettings) -> RegistryClient:
    if plan.client is None or plan.client.auth is not plan.auth:
        plan.client = plan.new_client(
            plan.destination.host, plan.auth, timeout=settings.stall_seconds
        )
    return plan.client


def _remote_manifest(
    plan: _Plan, settings: PushSettings, path: str, reference: str
) -> Manifest | None:
    return _client(plan, settings).manifest(path, reference)


def _copy_tag(plan: _Plan, settings: PushSettings, path: str, digest: str, tag: str) -> str:
    """Point a new tag at an already pushed manifest through the registry API."""
    client = _client(plan, settings)
    manifest = client.manifest(path, digest)
    if manifest is None:
        raise RegistryError(f"the registry lost manifest {digest} of {path}", kind="not_found")
    return client.put_manifest(path, tag, manifest)


def _push(
    plan: _Plan,
    selection: ImageSelection,
    image: ImageInfo,
    engine: Engine,
    reporter: Reporter,
    settings: PushSettings,
    sink: Callable[[Event], None],
) -> list[Pushed]:
    """Push to one destination; a failure carries the tags that did land there (for --json)."""
    results: list[Pushed] = []
    try:
        _push_into(results, plan, selection, image, engine, reporter, settings, sink)
    except ShipitError as exc:
        exc.completed.setdefault("pushed", [r.as_json() for r in results])
        raise
    return results


def _push_into(
    results: list[Pushed],
    plan: _Plan,
    selection: ImageSelection,
    image: ImageInfo,
    engine: Engine,
    reporter: Reporter,
    settings: PushSettings,
    sink: Callable[[Event], None],
) -> None:
    destination = plan.destination
    repository = destination.repository(selection.name)
    path = repository.partition("/")[2]
    pushed_digest: str | None = None
    for tag in selection.tags:
        reference = f"{repository}:{tag}"
        if tag in plan.unchanged:
            same = plan.unchanged[tag]
            reporter.info(f"{reference} is already up to date ({same[:19]})")
            results.append(Pushed(destination.label, reference, same, "unchanged"))
            continue
        status = "tagged"
        digest: str | None = None
        if pushed_digest is not None:
            # Extra tags reuse the pushed manifest: ECR PutImage, or the registry API.
            digest = destination.put_tag(selection.name, pushed_digest, tag)
            if digest is None:
                digest = _with_retry(
                    partial(_copy_tag, plan, settings, path, pushed_digest, tag),
                    destination,
                    plan,
                    reporter,
                    settings,
                )
        if digest is None:
            status = "pushed"
            digest = _tag_and_push(
                engine, image.id, repository, tag, plan, reporter, settings, sink
            )
        _verify_served(engine, reference, digest, plan, reporter, settings)
        pushed_digest = pushed_digest or digest
        reporter.info(f"{status} {reference}@{digest}")
        results.append(Pushed(destination.label, reference, digest, status))
    if settings.push_cache:
        results.append(_push_cache_image(plan, selection, engine, reporter, settings, sink))
    if pushed_digest is not None:
        destination.after_push(selection.name, pushed_digest, reporter)


def _verify_served(
    engine: Engine,
    reference: str,
    digest: str,
    plan: _Plan,
    reporter: Reporter,
    settings: PushSettings,
) -> None:
    """The registry must serve the digest the push reported (read back, with retries)."""
    served = _with_retry(
        partial(_served_digest, engine, reference, plan),
        plan.destination,
        plan,
        reporter,
        settings,
    )
    if served != digest:
        raise RegistryError(
            f"{reference}: the registry serves {served} but the push reported {digest}",
            hint="another push may have moved the tag at the same time; push again",
            kind="digest_mismatch",
        )


def _push_cache_image(
    plan: _Plan,
    selection: ImageSelection,
    engine: Engine,
    reporter: Reporter,
    settings: PushSettings,
    sink: Callable[[Event], None],
) -> Pushed:
    """Push NAME:buildcache (the builder stage) beside the image, for --cache-from rebuilds."""
    from shipit.services.build import CACHE_TAG

    destination = plan.destination
    repository = destination.repository(selection.name)
    cache = engine.require_image(f"{selection.name}:{CACHE_TAG}")
    digest = _tag_and_push(engine, cache.id, repository, CACHE_TAG, plan, reporter, settings, sink)
    reporter.info(f"pushed build cache {repository}:{CACHE_TAG}@{digest}")
    return Pushed(destination.label, f"{repository}:{CACHE_TAG}", digest, "cache")


def _tag_and_push(
    engine: Engine,
    image_id: str,
    repository: str,
    tag: str,
    plan: _Plan,
    reporter: Reporter,
    settings: PushSettings,
    sink: Callable[[Event], None],
) -> str:
    """Tag the local image REPOSITORY:TAG and push it through the engine (with retries); the
    digest the push reported."""
    engine.tag(image_id, repository, tag)
    events = _engine_events(sink, plan.destination, reporter, settings)
    return _with_retry(
        partial(_engine_push, engine, repository, tag, plan, events),
        plan.destination,
        plan,
        reporter,
        settings,
    )


def _engine_push(
    engine: Engine, repository: str, tag: str, plan: _Plan, sink: Callable[[Event], None]
) -> str:
    # plan.auth is read at call time: a retry after a token refresh uses the fresh token.
    return engine.push(repository, tag, plan.auth, sink)


_ENGINE_RETRY = re.compile(r"Retrying in (\d+)")


def _engine_events(
    sink: Callable[[Event], None],
    destination: Destination,
    reporter: Reporter,
    settings: PushSettings,
) -> Callable[[Event], None]:
    """The event sink for one engine push operation (all its attempts).

    The engine retries failed layer uploads by itself (five tries over about 50 s) and only
    streams "Retrying in N seconds". Each such retry is reported, and once they outlast
    --retry-timeout the push is ended, so the bound holds however the engine retries. A push
    that is making progress is never cut short: only a retrying one.
    """
    deadline = time.monotonic() + settings.retry.total_seconds
    countdown: dict[str, int] = {}

    def events(event: Event) -> None:
        sink(event)
        if not isinstance(event, PushProgress):
            return
        match = _ENGINE_RETRY.match(event.status)
        if match is None:
            countdown.pop(event.layer, None)
            return
        seconds = int(match.group(1))
        if seconds > countdown.get(event.layer, 0):
            reporter.warn(
                f"{destination.label}: the registry failed the upload of layer {event.layer}; "
                f"the engine retries it in {seconds}s"
            )
        countdown[event.layer] = seconds
        if time.monotonic() > deadline:
            raise RegistryError(
                f"the upload of layer {event.layer} was still failing when --retry-timeout "
                f"({settings.retry.total_seconds:g}s) ran out",
                hint="check the registry (it keeps failing uploads), or raise --retry-timeout",
                transient=True,
                kind="timeout",
            )

    return events


def _served_digest(engine: Engine, reference: str, plan: _Plan) -> str:
    return engine.distribution_digest(reference, plan.auth)


def _with_retry(
    fn: Callable[[], T],
    destination: Destination,
    plan: _Plan,
    reporter: Reporter,
    settings: PushSettings,
) -> T:
    """Retry transient failures; after a 401 (an expired ECR token), re-authenticate once."""

    def on_retry(attempt: int, error: RegistryError, delay: float) -> None:
        reporter.warn(
            f"{destination.label}: {error.kind} ({error.message}); retry {attempt} in {delay:.1f}s"
        )

    try:
        return call_with_retry(
            _believed_refusals(fn, plan, settings), settings.retry, on_retry=on_retry
        )
    except AuthError as exc:
        if plan.auth is None:
            raise _no_credentials(destination, exc) from exc
        if destination.kind != "ecr":
            raise
        reporter.warn(f"{destination.label}: authorization rejected; fetching a fresh ECR token")
        plan.auth = destination.authenticate(reporter, refresh=True)
        return call_with_retry(fn, settings.retry, on_retry=on_retry)


def _believed_refusals(fn: Callable[[], T], plan: _Plan, settings: PushSettings) -> Callable[[], T]:
    """`fn`, where an `unauthorized` is believed only once the registry refuses the credentials.

    After a transient failure of the registry's /v2/ ping (a 503) the engine goes on
    without credentials and reports `unauthorized`. So the credentials are checked directly,
    the way a push begins (an upload started and cancelled): refused, or not allowed to push,
    it is the auth error (exit 3); accepted, a transient error that is retried; the check
    failing for another reason leaves the engine's word.
    ECR keeps its own path (a fresh token), and an anonymous push has nothing to check.
    """

    def call() -> T:
        try:
            return fn()
        except AuthError as refused:
            if plan.destination.kind == "ecr" or plan.auth is None:
                raise
            try:
                _client(plan, settings).check_push_access(plan.path)
            except AuthError:
                raise refused from None
            except RegistryError as unsure:
                if unsure.transient:
                    raise
                raise refused from None
            raise RegistryError(
                "the engine's push was refused as unauthorized, yet the registry accepts "
                "these credentials",
                hint="a transient registry failure can make the engine push without "
                "credentials; if this persists, check the registry's auth setup",
                transient=True,
                kind="auth_unverified",
            ) from refused

    return call


def _no_credentials(destination: Destination, refused: AuthError) -> AuthError:
    """The registry wants credentials and none were sent: say how to give them."""
    return AuthError(
        f"{destination.host} requires credentials and none were sent (no --username with "
        "--password-stdin, no SHIPIT_REGISTRY_USERNAME/SHIPIT_REGISTRY_PASSWORD, no login in "
        "the Docker config)",
        hint="set SHIPIT_REGISTRY_USERNAME and SHIPIT_REGISTRY_PASSWORD, pass --username with "
        f"--password-stdin, or run 'shipit login --registry {destination.label}' first",
    )


def _dry_run(
    selection: ImageSelection, destinations: Sequence[Destination], reporter: Reporter
) -> list[Pushed]:
    planned: list[Pushed] = []
    for destination in destinations:
        for line in destination.plan(selection.name):
            reporter.info(f"would ensure {line}")
        reporter.info(f"would log in to {destination.host}")
        repository = destination.repository(selection.name)
        for tag in selection.tags:
            reference = f"{repository}:{tag}"
            reporter.info(f"would push {reference}")
            planned.append(Pushed(destination.label, reference, "", "planned"))
    return planned
