"""Which builder builds an image, and what a BuildKit build needs around its request.

BuildKit is the default wherever the engine has it; the legacy builder stays behind docker's own
switch (``DOCKER_BUILDKIT=0``) and the ``builder`` config key. A session (secrets, SSH agents,
registry credentials) is opened only when a build needs one, so most builds never import grpc.
"""

from __future__ import annotations

import contextlib
import re
import shlex
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from shipit.errors import BuildError, UsageError

BUILDKIT = "buildkit"
LEGACY = "legacy"
BUILDERS = (BUILDKIT, LEGACY)
# Go's strconv.ParseBool, which docker uses for DOCKER_BUILDKIT.
_TRUE = {"1", "t", "T", "TRUE", "true", "True"}
_FALSE = {"0", "f", "F", "FALSE", "false", "False"}


@dataclass(frozen=True)
class BuilderChoice:
    """The builder a build uses, and the one note to print when BuildKit was wanted but absent."""

    kind: str
    reason: str
    note: str | None = None


def requested_builder(env: Mapping[str, str], configured: str | None) -> str | None:
    """``DOCKER_BUILDKIT`` (docker's switch) over the ``builder`` config key; None: automatic."""
    raw = env.get("DOCKER_BUILDKIT", "")
    if raw:
        if raw in _TRUE:
            return BUILDKIT
        if raw in _FALSE:
            return LEGACY
        raise UsageError(f"DOCKER_BUILDKIT={raw[:20]!r} is not a boolean: use 1 or 0")
    if configured is not None and configured not in BUILDERS:
        raise UsageError(f'builder = {configured!r}: use "buildkit" or "legacy"')
    return configured


def choose_builder(requested: str | None, version: Mapping[str, Any]) -> BuilderChoice:
    """The builder for this engine (its ``/version`` answer); BuildKit when it can."""
    from shipit.adapters.engine.buildkit.build import buildkit_support

    if requested == LEGACY:
        return BuilderChoice(LEGACY, 'DOCKER_BUILDKIT=0 or builder = "legacy"')
    missing = buildkit_support(version)
    if missing is None:
        why = "requested" if requested == BUILDKIT else "the engine supports it"
        return BuilderChoice(BUILDKIT, why)
    if requested == BUILDKIT:
        raise UsageError(
            f"BuildKit was requested but {missing}",
            hint='unset DOCKER_BUILDKIT or set builder = "legacy"',
        )
    return BuilderChoice(LEGACY, missing, note=f"building with the legacy builder: {missing}")


# ---------------------------------------------------------------- what the Dockerfile says

# Build args every Dockerfile may use without declaring them (docker's builtin allowed args)
# and BuildKit's own switches.
PREDEFINED_ARGS = frozenset(
    {
        *(
            p
            for name in ("HTTP_PROXY", "HTTPS_PROXY", "FTP_PROXY", "NO_PROXY", "ALL_PROXY")
            for p in (name, name.lower())
        ),
        "BUILDKIT_INLINE_CACHE",
        "BUILDKIT_MULTI_PLATFORM",
        "BUILDKIT_SYNTAX",
        "BUILDKIT_CONTEXT_KEEP_GIT_DIR",
        "BUILDKIT_CACHE_MOUNT_NS",
        "SOURCE_DATE_EPOCH",
    }
)
_ARG_RE = re.compile(r"^\s*ARG\s+(.+)$", re.MULTILINE | re.IGNORECASE)
_FROM_RE = re.compile(
    r"^\s*FROM\s+(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?", re.MULTILINE | re.IGNORECASE
)
_VAR_RE = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)(?::?[-+][^}]*)?\}|([A-Za-z_][A-Za-z0-9_]*))")
_MOUNT_RE = re.compile(r"--mount=(?:\S*,)?type=(secret|ssh)\b", re.IGNORECASE)


def _joined(text: str) -> str:
    """The Dockerfile with line continuations joined, as the parser reads it."""
    return re.sub(r"\\[ \t]*\r?\n", " ", text)


def declared_args(text: str) -> dict[str, str | None]:
    """Every ARG the Dockerfile declares, with its default (None without one)."""
    args: dict[str, str | None] = {}
    for match in _ARG_RE.finditer(_joined(text)):
        try:
            items = shlex.split(match.group(1), comments=True)
        except ValueError:  # an unbalanced quote: the engine reports the Dockerfile itself
            items = match.group(1).split()
        for item in items:
            name, sep, default = item.partition("=")
            if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
                args.setdefault(name, default if sep else None)
    return args


def unused_build_args(given: Sequence[str], text: str, ignore: Sequence[str] = ()) -> list[str]:
    """Build args no ARG of the Dockerfile declares (docker's "were not consumed" warning)."""
    declared = declared_args(text)
    return [
        name
        for name in given
        if name not in declared and name not in PREDEFINED_ARGS and name not in ignore
    ]


def base_images(text: str, build_args: Mapping[str, str]) -> list[str]:
    """The images the Dockerfile's FROM lines name (ARGs substituted; stages and scratch left out)."""
    text = _joined(text)
    values = {k: v for k, v in declared_args(text).items() if v is not None}
    values.update(build_args)
    stages: set[str] = set()
    images: list[str] = []
    for match in _FROM_RE.finditer(text):
        ref = _VAR_RE.sub(lambda m: values.get(m.group(1) or m.group(2), ""), match.group(1))
        if ref and ref.lower() != "scratch" and ref.lower() not in stages and ref not in images:
            images.append(ref)
        if match.group(2):
            stages.add(match.group(2).lower())
    return images


def session_mounts(text: str) -> set[str]:
    """Which session-served mounts (``secret``, ``ssh``) RUN steps use."""
    return {m.group(1).lower() for m in _MOUNT_RE.finditer(text)}


def registry_host(reference: str) -> str:
    """The registry a reference lives on, as BuildKit asks for it (Docker Hub: registry-1)."""
    first, sep, _ = reference.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        return first
    return "registry-1.docker.io"


# ---------------------------------------------------------------- platforms told the truth


def check_platform(requested: str, image: Mapping[str, Any]) -> None:
    """Raise BuildError when the built image (the engine's inspect answer) is not for the
    requested platform: the legacy builder quietly builds a local base image's platform."""
    from shipit.platforms import image_platform, parse_platform

    wanted = parse_platform(requested)
    got = image_platform(image)
    if wanted.matches(got.os, got.architecture, got.variant):
        return
    raise BuildError(
        f"the build produced a {got} image, not the requested {wanted}",
        hint=f"give it a base image for {wanted} (the engine used one for {got}), "
        "or build with BuildKit, which resolves each platform's base image",
    )


# ---------------------------------------------------------------- the build session

# Shorter secret values are not masked in output: hiding every "1" would garble it.
MASK_MIN = 4
_ECR_HOST = re.compile(r"(\d{12})\.dkr\.ecr\.([a-z0-9-]+)\.amazonaws\.com(?:\.cn)?")


def has_credentials(host: str, env: Mapping[str, str]) -> bool:
    """Whether the Docker config could hold credentials for ``host`` (no helper is run), or
    it is an ECR registry (shipit's own token path)."""
    from shipit.adapters import dockerconfig
    from shipit.errors import ConfigError

    if _ECR_HOST.fullmatch(host):
        return True
    try:
        config = dockerconfig.load(env)
    except ConfigError:
        return False  # the build says so if it needs credentials
    if dockerconfig.helper_for(config, host) is not None:
        return True
    auths = config.get("auths") or {}
    return isinstance(auths, dict) and bool(dockerconfig._matching(auths, host))


def credentials_lookup(env: Mapping[str, str]) -> Callable[[str], tuple[str, str] | None]:
    """What the session's Auth provider answers for a registry host: the Docker config's
    auths, credsStore and credHelpers (as `docker build` reads them), then for an ECR host a
    token from shipit's ECR login path (its token cache first)."""

    def lookup(host: str) -> tuple[str, str] | None:
        from shipit.adapters import dockerconfig

        found = dockerconfig.lookup(host, env)
        if found is not None:
            user, secret = found
            return ("" if user == "<token>" else user), secret  # an identity token
        match = _ECR_HOST.fullmatch(host)
        if match is None:
            return None
        from shipit.services.registries import RegistryOptions, make_ecr_registry

        options = RegistryOptions(region=match.group(2), registry_id=match.group(1))
        creds = make_ecr_registry(options, env).credentials()
        return creds.username, creds.password

    return lookup


@dataclass(frozen=True)
class SessionPlan:
    """What a build's session serves; empty when the build needs no session."""

    secrets: tuple[Any, ...] = ()  # SecretSource
    ssh: tuple[Any, ...] = ()  # AgentSource
    registries: tuple[str, ...] = ()  # hosts whose credentials the build may need
    mounts: frozenset[str] = frozenset()  # session mounts the Dockerfile uses
    always: bool = False
    # Where secrets from environment variables and registry credentials are read.
    env: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)

    @property
    def needed(self) -> bool:
        return bool(self.always or self.secrets or self.ssh or self.registries or self.mounts)


def plan_session(
    dockerfile_text: str,
    *,
    build_args: Mapping[str, str],
    cache_from: Sequence[str],
    secrets: Sequence[Any],
    ssh: Sequence[Any],
    env: Mapping[str, str],
    always: bool = False,
) -> SessionPlan:
    """Decide, before the engine is called, whether the build needs a session and for what."""
    references = [*base_images(dockerfile_text, build_args), *cache_from]
    hosts = dict.fromkeys(registry_host(r) for r in references)
    return SessionPlan(
        secrets=tuple(secrets),
        ssh=tuple(ssh),
        registries=tuple(h for h in hosts if has_credentials(h, env)),
        mounts=frozenset(session_mounts(dockerfile_text)),
        always=always,
        env=env,
    )


def session_providers(plan: SessionPlan, mask: Callable[[str], None]) -> list[Any]:
    """The providers a planned session serves (none: no session). Secrets are read here, so
    a source that vanished since the options were checked fails before the build, and each
    value is handed to ``mask`` so no output line can show it."""
    if not plan.needed:
        return []
    from shipit.adapters.engine.buildkit.auth import AuthProvider
    from shipit.adapters.engine.buildkit.secrets import SecretSourceError, SecretsProvider
    from shipit.adapters.engine.buildkit.sshforward import SSHProvider

    values: dict[str, bytes] = {}
    for source in plan.secrets:
        if source.id in values:
            raise SecretSourceError(f"secret '{source.id}' is given twice")
        values[source.id] = source.read(plan.env)
        text = values[source.id].decode("utf-8", "replace").strip()
        if len(text) >= MASK_MIN:
            mask(text)
    providers: list[Any] = [SecretsProvider(values), AuthProvider(credentials_lookup(plan.env))]
    if plan.ssh:
        providers.append(SSHProvider.from_sources(plan.ssh))
    return providers


# ---------------------------------------------------------------- one BuildKit build

# Every image carries BuildKit's inline cache metadata, so any image shipit pushed can be a
# --cache-from source of a later build on an empty builder (ephemeral CI runners).
INLINE_CACHE = {"BUILDKIT_INLINE_CACHE": "1"}


@dataclass(frozen=True)
class BuildKitStage:
    """One ``/build?version=2`` request of a shipit build: a target stage and its tag."""

    target: str | None
    tag: str
    no_cache: bool = False


def build_stages(
    stages: Sequence[BuildKitStage],
    request: Mapping[str, Any],
    *,
    engine: Any,
    reporter: Any,
    fileobj: Any,
    plan: SessionPlan,
    cache_sources: Sequence[str],
    own_cache_sources: Sequence[str] = (),
    extra_providers: Sequence[Any] = (),
    session_name: str = "shipit",
    shared_key: str = "",
    on_first_step: Callable[[], None] | None = None,
) -> list[str]:
    """Build each stage in order (one session for all of them); their image ids, in order.

    ``request`` holds the BuildRequest fields every stage shares; ``cache_sources`` are the
    --cache-from images (an unavailable one is a warning), ``own_cache_sources`` the ones
    shipit adds (their builder-stage images; missing is normal, said with -v).
    ``on_first_step`` is called when the engine starts a step that is not [internal].
    """
    from shipit.adapters.engine.buildkit.transport import BuildRequest

    providers = [*session_providers(plan, reporter.mask), *extra_providers]
    if providers:
        reporter.detail(f"build session: {', '.join(type(p).__name__ for p in providers)}")
    sources = list(dict.fromkeys([*cache_sources, *own_cache_sources]))
    image_ids: list[str] = []
    for stage in stages:
        if fileobj is not None:  # None: the context comes through file sync
            fileobj.seek(0)
        build_request = BuildRequest(
            tags=[stage.tag],
            target=stage.target,
            nocache=stage.no_cache,
            cachefrom=sources,
            **request,
        )
        session = {"session_name": session_name, "shared_key": shared_key}
        image_id, trace = _one_stage(
            engine, reporter, build_request, fileobj, providers, session, on_first_step
        )
        image_ids.append(image_id)
        for reference, error in trace.unavailable_caches:
            say = reporter.warn if reference in cache_sources else reporter.detail
            say(f"cache image {reference} is not available ({_first_line(error)}); not used")
    return image_ids


def _first_line(text: str, limit: int = 160) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _one_stage(
    engine: Any,
    reporter: Any,
    request: Any,
    fileobj: Any,
    providers: Sequence[Any],
    session: Mapping[str, str],
    on_first_step: Callable[[], None] | None = None,
) -> tuple[str, Any]:
    from shipit.adapters.engine.buildkit.build import run_build
    from shipit.adapters.engine.buildkit.trace import BuildTrace
    from shipit.output.build_progress import build_progress

    tag = request.tags[0]
    trace = BuildTrace()
    with build_progress(reporter, f"Building {tag}") as view:
        on_event = view if on_first_step is None else _watch_first_step(view, on_first_step)
        image_id = run_build(
            engine, request, fileobj, providers=providers, on_event=on_event, trace=trace,
            **session,
        )  # fmt: skip
    done, cached = trace.counts()
    took = trace.total_seconds
    timing = f" in {took:.1f}s" if took is not None else ""
    steps = "1 step" if done == 1 else f"{done} steps"
    reporter.info(f"built {tag}{timing}: {steps}, {cached} cached")
    return image_id, trace


def _watch_first_step(view: Callable[[Any], None], first_step: Callable[[], None]) -> Any:
    """`view`, also calling `first_step` when a step that is not [internal] starts."""
    from shipit.adapters.engine.buildkit.trace import StepStarted, is_internal

    def on_event(event: Any) -> None:
        view(event)
        if isinstance(event, StepStarted) and not is_internal(event.name):
            first_step()

    return on_event


# ---------------------------------------------------------------- the context through file sync

# How a BuildKit build sends its context: "sync" serves it from the session (the engine asks for
# the files that changed since the last build of this directory), "tar" posts shipit's tar as
# the request body (the engine re-reads the whole upload every build).
SYNC = "sync"
TAR = "tar"
AUTO = "auto"
CONTEXT_TRANSPORTS = (AUTO, SYNC, TAR)
# "auto" sends a context this small as a tar when the build needs no session otherwise: the
# engine re-reads a small upload in no time, and a build without a session imports no grpc and
# opens no second connection (docs/benchmarks.md: the inner-loop case).
SMALL_CONTEXT_BYTES = 2 * 1024 * 1024
SMALL_CONTEXT_FILES = 500


def context_transport(env: Mapping[str, str]) -> str:
    """``SHIPIT_BUILD_CONTEXT``: "auto" (the default), "sync" or "tar"."""
    value = env.get("SHIPIT_BUILD_CONTEXT", "").strip().lower() or AUTO
    if value not in CONTEXT_TRANSPORTS:
        raise UsageError(f"SHIPIT_BUILD_CONTEXT={value[:20]!r}: use auto, sync or tar")
    return value


def pick_transport(requested: str, facts: ContextFacts, session_needed: bool) -> tuple[str, str]:
    """The way a BuildKit build sends its context, and why (said with -v)."""
    if requested != AUTO:
        return requested, f"SHIPIT_BUILD_CONTEXT={requested}"
    small = facts.size_bytes <= SMALL_CONTEXT_BYTES and facts.file_count <= SMALL_CONTEXT_FILES
    if small and not session_needed:
        return TAR, f"a small context ({facts.file_count} files, {facts.size_bytes} bytes)"
    if small:
        return SYNC, "the build opens a session anyway"
    return SYNC, f"{facts.file_count} files, {facts.size_bytes} bytes: only changes are sent"


def build_node_id(env: Mapping[str, str]) -> str:
    """A random id kept once per machine in shipit's cache directory (docker keeps its own
    in ~/.docker/.buildNodeID): with the context directory it keys what the engine keeps.
    The first id written wins: builds starting side by side (one per platform) on a machine
    without one all read the same id."""
    import os
    import secrets as random_ids
    import tempfile
    from pathlib import Path

    if env.get("SHIPIT_CACHE_DIR"):
        base = Path(env["SHIPIT_CACHE_DIR"]).expanduser()
    elif env.get("XDG_CACHE_HOME"):
        base = Path(env["XDG_CACHE_HOME"]).expanduser() / "shipit"
    else:
        base = Path(env.get("HOME") or Path.home()) / ".cache" / "shipit"
    path = base / "buildkit-node-id"
    found = _node_id(path)
    if found:
        return found
    node = random_ids.token_hex(32)
    try:
        base.mkdir(parents=True, exist_ok=True)
        fd, written = tempfile.mkstemp(dir=base, prefix=".buildkit-node-id-")
        with os.fdopen(fd, "w", encoding="ascii") as out:
            out.write(node + "\n")
        try:
            os.link(written, path)  # creates it only if no other build has: atomic
        except FileExistsError:
            found = _node_id(path)
            if found:
                return found
            os.replace(written, path)  # what was there is no id: replace it
        finally:
            with contextlib.suppress(OSError):
                os.unlink(written)
    except OSError:
        pass  # a read-only home: this build still works, the next one syncs everything
    return node


def _node_id(path: Any) -> str | None:
    try:
        found = str(path.read_text(encoding="ascii")).strip()
    except OSError:
        return None
    return found if re.fullmatch(r"[0-9a-f]{32,64}", found) else None


@dataclass(frozen=True)
class ContextFacts:
    """What the context tar would tell about the files a build sends, without the tar."""

    file_count: int
    size_bytes: int
    secret_like: list[str]
    newest_mtime: int


def scan_context(context_dir: Any, dockerfile: Any) -> ContextFacts:
    """Walk the context as the tar (and file sync) would send it: counts, secret-looking
    paths and the newest modification time, for the warnings and the created label."""
    import os
    import stat as statmod

    from shipit.context import DOCKERIGNORE, IgnoreMatcher, read_dockerignore, walk_context
    from shipit.context.tar import _secret_like

    root = os.path.realpath(context_dir)
    real_dockerfile = os.path.realpath(os.path.abspath(dockerfile))
    relative = os.path.relpath(real_dockerfile, root)
    outside = relative == ".." or relative.startswith("../")
    forced = {DOCKERIGNORE} if outside else {DOCKERIGNORE, relative}
    matcher = IgnoreMatcher(read_dockerignore(context_dir))
    count = size = newest = 0
    secret_like: set[str] = set()
    for item in walk_context(root, matcher, forced=forced, shown_root=context_dir):
        try:
            st = item.entry.stat(follow_symlinks=False)
        except OSError:
            continue  # vanished: the tar skips it too
        newest = max(newest, int(st.st_mtime))
        if statmod.S_ISREG(st.st_mode):
            count += 1
            size += st.st_size
        found = _secret_like(item.relpath, item.is_dir)
        if found:
            secret_like.add(found)
    if outside:
        newest = max(newest, int(os.stat(real_dockerfile).st_mtime))
    return ContextFacts(count, size, sorted(secret_like), newest)
