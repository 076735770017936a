"""Where images go: ECR, Docker Hub or any OCI registry host; their references and credentials.

Credentials are resolved in one place, `resolve_credentials`, in this order:
1. `--username` with `--password-stdin` (the secret is read from stdin, never an option value);
2. environment: DOCKERHUB_USERNAME + DOCKERHUB_TOKEN (Docker Hub),
   SHIPIT_REGISTRY_USERNAME + SHIPIT_REGISTRY_PASSWORD (other hosts);
3. an existing login in the Docker config (including credential helpers).
ECR always uses a fresh (or cached, unexpired) GetAuthorizationToken result.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from functools import partial
from typing import TYPE_CHECKING, Any

from shipit.adapters import dockerconfig
from shipit.errors import AuthError, ShipitError, UsageError
from shipit.model import Auth
from shipit.reference import PATH_RE, RegistryTarget, parse_registry_target

if TYPE_CHECKING:
    from shipit.adapters.ecr import EcrRegistry
    from shipit.output.reporter import Reporter

# Makes the (ECR, STS) clients for a region and profile: the wiring's `Clients.aws`.
AwsClients = Callable[[str, str | None], tuple[Any, Any]]
DOCKER_HUB_HOST = "docker.io"
_DOCKER_HUB_HOSTS = ("docker.io", "index.docker.io", "registry-1.docker.io")
KNOWN_KINDS = ("ecr", "dockerhub")


@dataclass(frozen=True)
class RegistryOptions:
    """Registry options shared by login, push and release."""

    registries: tuple[str, ...] = ()
    region: str | None = None
    profile: str | None = None
    registry_id: str | None = None
    repository: str | None = None
    create_repo: bool = True
    immutable_tags: bool = False
    kms_key: str | None = None
    namespace: str | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    # ECR release hygiene (opt-in): lifecycle policy and a scan-on-push gate.
    lifecycle_keep: int | None = None
    lifecycle_untagged_days: int | None = None
    scan_gate: str | None = None
    scan_timeout: float = 600.0


def parse_kind(value: str) -> str | RegistryTarget:
    """'ecr', 'dockerhub', or a registry host with optional port and namespace path."""
    lowered = value.strip().lower()
    if lowered in KNOWN_KINDS:
        return lowered
    if lowered in {"docker.io", "hub", "docker-hub"}:
        return "dockerhub"
    if "/" not in value and ":" not in value and "." not in value and value != "localhost":
        raise UsageError(
            f"unknown registry '{value}': use 'ecr', 'dockerhub', or a registry host such as "
            "'localhost:5000' or 'ghcr.io/acme'"
        )
    return parse_registry_target(value)


def host_credentials(
    host: str,
    env: Mapping[str, str],
    *,
    username: str | None = None,
    password: str | None = None,
) -> Auth | None:
    """The credentials for a registry host (not ECR or Docker Hub): --username and
    --password-stdin, else SHIPIT_REGISTRY_USERNAME/PASSWORD, else the Docker config."""
    return resolve_credentials(
        host,
        username=username,
        password=password,
        env_user=env.get("SHIPIT_REGISTRY_USERNAME"),
        env_secret=env.get("SHIPIT_REGISTRY_PASSWORD"),
        env_names=("SHIPIT_REGISTRY_USERNAME", "SHIPIT_REGISTRY_PASSWORD"),
        env=env,
    )


def resolve_credentials(
    registry: str,
    *,
    username: str | None,
    password: str | None,
    env_user: str | None,
    env_secret: str | None,
    env_names: tuple[str, str],
    env: Mapping[str, str],
) -> Auth | None:
    """The one documented credential order (see the module docstring).

    A username without a password (`--username` alone, or `username` in the config) is not a
    credential: it only names the Docker Hub namespace, and the later sources still apply.
    """
    if password:
        username = username or env_user
        if not username:
            raise UsageError(
                f"--password-stdin needs --username (or {env_names[0]}) for {registry}"
            )
        return Auth(username=username, password=password, registry=registry)
    if env_user or env_secret:
        if not (env_user and env_secret):
            missing = env_names[1] if env_user else env_names[0]
            raise AuthError(f"{missing} is not set ({'/'.join(env_names)} go together)")
        return Auth(username=env_user, password=env_secret, registry=registry)
    found = dockerconfig.lookup(registry, env)
    if found is not None:
        return Auth(username=found[0], password=found[1], registry=registry)
    return None


class Destination(ABC):
    """One registry to push to. Subclasses fill in references, authentication and extras."""

    kind: str = ""

    @property
    def label(self) -> str:
        return self.kind

    @property
    @abstractmethod
    def host(self) -> str:
        """The registry host (with port)."""

    @abstractmethod
    def repository(self, image_name: str) -> str:
        """The full repository (HOST/PATH/NAME) an image name is pushed to."""

    def prepare(self, image_name: str, reporter: Reporter) -> None:
        """Anything that must exist before pushing (an ECR repository)."""
        return None

    @abstractmethod
    def authenticate(self, reporter: Reporter, *, refresh: bool = False) -> Auth | None:
        """Credentials for the engine, or None for an anonymous registry."""

    def plan(self, image_name: str) -> list[str]:
        """What `--dry-run` says this destination would do besides pushing."""
        return []

    def after_push(self, image_name: str, digest: str, reporter: Reporter) -> None:
        """Checks and settings that follow a successful push (ECR lifecycle, scan gate)."""
        return None

    def put_tag(self, image_name: str, digest: str, tag: str) -> str | None:
        """Tag an already pushed manifest without an engine push; None when unsupported."""
        return None


@dataclass
class GenericRegistry(Destination):
    """Any OCI registry host: 'localhost:5000', 'ghcr.io/acme'."""

    target: RegistryTarget
    options: RegistryOptions
    env: Mapping[str, str] = field(repr=False)  # holds DOCKERHUB_TOKEN and friends
    kind: str = "registry"

    @property
    def label(self) -> str:
        return self.target.host + (f"/{self.target.path}" if self.target.path else "")

    @property
    def host(self) -> str:
        return self.target.host

    def repository(self, image_name: str) -> str:
        return self.target.repository(self.options.repository or image_name)

    def authenticate(self, reporter: Reporter, *, refresh: bool = False) -> Auth | None:
        auth = host_credentials(
            self.target.host,
            self.env,
            username=self.options.username,
            password=self.options.password,
        )
        if auth is not None:
            reporter.mask(auth.password)
        return auth


@dataclass
class DockerHub(Destination):
    """Docker Hub: docker.io/NAMESPACE/NAME:TAG."""

    options: RegistryOptions
    env: Mapping[str, str] = field(repr=False)  # holds DOCKERHUB_TOKEN and friends
    kind: str = "dockerhub"

    @property
    def host(self) -> str:
        return DOCKER_HUB_HOST

    def namespace(self) -> str:
        namespace = (
            self.options.namespace
            or self.env.get("DOCKERHUB_NAMESPACE")
            or self.env.get("DOCKERHUB_USERNAME")
            or self.options.username
        )
        if not namespace and self._login_username():
            raise UsageError(
                "no Docker Hub namespace: pass --namespace or set DOCKERHUB_NAMESPACE "
                "(or DOCKERHUB_USERNAME)"
            )
        if not namespace:
            # No credentials name the account either: they are what is missing (exit 3).
            raise AuthError(
                "no Docker Hub credentials: set DOCKERHUB_USERNAME and DOCKERHUB_TOKEN "
                "(an access token), pass --username with --password-stdin, or run "
                "'docker login'",
                hint="--namespace (or DOCKERHUB_NAMESPACE) pushes to an organisation instead",
            )
        namespace = namespace.lower()
        if "/" in namespace or not PATH_RE.match(namespace):
            raise UsageError(f"invalid Docker Hub namespace '{namespace}'")
        return namespace

    def _login_username(self) -> str | None:
        """The user of an existing Docker Hub login in the Docker config, if any."""
        try:
            found = dockerconfig.lookup(dockerconfig.DOCKER_HUB_KEY, self.env)
        except ShipitError:
            return None
        return found[0] if found else None

    def repository(self, image_name: str) -> str:
        name = self.options.repository or image_name.rsplit("/", 1)[-1]
        return f"{DOCKER_HUB_HOST}/{self.namespace()}/{name}"

    def authenticate(self, reporter: Reporter, *, refresh: bool = False) -> Auth | None:
        auth = resolve_credentials(
            dockerconfig.DOCKER_HUB_KEY,
            username=self.options.username,
            password=self.options.password,
            env_user=self.env.get("DOCKERHUB_USERNAME"),
            env_secret=self.env.get("DOCKERHUB_TOKEN"),
            env_names=("DOCKERHUB_USERNAME", "DOCKERHUB_TOKEN"),
            env=self.env,
        )
        if auth is None:
            raise AuthError(
                "no Docker Hub credentials: set DOCKERHUB_USERNAME and DOCKERHUB_TOKEN "
                "(an access token), pass --username with --password-stdin, or run 'docker login'"
            )
        reporter.mask(auth.password)
        return auth


@dataclass
class Ecr(Destination):
    """Amazon ECR: ACCOUNT.dkr.ecr.REGION.amazonaws.com/REPO:TAG."""

    registry: EcrRegistry
    options: RegistryOptions
    kind: str = "ecr"
    _auth: Auth | None = None

    @property
    def host(self) -> str:
        # After authenticating, the token names the registry host: no STS call needed.
        return self._auth.registry if self._auth is not None else self.registry.registry_host

    def repo_name(self, image_name: str) -> str:
        return self.options.repository or image_name

    def repository(self, image_name: str) -> str:
        return f"{self.host}/{self.repo_name(image_name)}"

    def plan(self, image_name: str) -> list[str]:
        action = "create if missing" if self.options.create_repo else "require"
        return [
            f"ECR repository {self.repo_name(image_name)} in {self.host}: {action} "
            f"(scan on push, {'KMS' if self.options.kms_key else 'AES256'}, "
            f"{'IMMUTABLE' if self.options.immutable_tags else 'MUTABLE'} tags)"
        ]

    def prepare(self, image_name: str, reporter: Reporter) -> None:
        result = self.registry.ensure_repository(
            self.repo_name(image_name),
            create=self.options.create_repo,
            immutable_tags=self.options.immutable_tags,
            kms_key=self.options.kms_key,
        )
        reporter.info(f"ECR repository {result.name}: {'created' if result.created else 'exists'}")

    def authenticate(self, reporter: Reporter, *, refresh: bool = False) -> Auth | None:
        if self._auth is not None and not refresh:
            return self._auth
        creds = self.registry.credentials(refresh=refresh)
        reporter.mask(creds.password)
        self._auth = Auth(username=creds.username, password=creds.password, registry=creds.registry)
        return self._auth

    def after_push(self, image_name: str, digest: str, reporter: Reporter) -> None:
        repo = self.repo_name(image_name)
        opts = self.options
        if opts.lifecycle_keep is not None or opts.lifecycle_untagged_days is not None:
            self.registry.set_lifecycle_policy(
                repo,
                keep_tagged=opts.lifecycle_keep,
                expire_untagged_days=opts.lifecycle_untagged_days,
            )
            reporter.info(f"ECR lifecycle policy set on {repo}")
        if opts.scan_gate:
            reporter.info(f"waiting for the scan-on-push findings of {repo}@{digest[:19]}")
            counts = self.registry.scan_findings(repo, digest, timeout=opts.scan_timeout)
            blocking = scan_gate_failures(counts, opts.scan_gate)
            summary = ", ".join(f"{k}={v}" for k, v in sorted(counts.items())) or "no findings"
            if blocking:
                from shipit.errors import RegistryError

                raise RegistryError(
                    f"scan gate failed for {repo}@{digest}: {summary} "
                    f"(threshold {opts.scan_gate.upper()})",
                    hint="fix the vulnerable packages, or raise --scan-gate",
                    kind="scan_gate",
                )
            reporter.info(f"scan gate passed ({summary})")

    def put_tag(self, image_name: str, digest: str, tag: str) -> str | None:
        """PutImage on the existing manifest; None (so the engine pushes) if ECR lacks it."""
        from shipit.errors import RegistryError

        try:
            return self.registry.put_tag(self.repo_name(image_name), digest, tag)
        except RegistryError as exc:
            if exc.kind == "immutable_tag":
                raise
            return None


SEVERITIES = ("INFORMATIONAL", "LOW", "MEDIUM", "HIGH", "CRITICAL")


def scan_gate_failures(counts: Mapping[str, int], threshold: str) -> dict[str, int]:
    """Findings at or above the threshold severity (CRITICAL > HIGH > MEDIUM > LOW > INFORMATIONAL)."""
    level = SEVERITIES.index(threshold.upper())
    return {
        sev: n
        for sev, n in counts.items()
        if n and sev.upper() in SEVERITIES and SEVERITIES.index(sev.upper()) >= level
    }


def make_ecr_registry(
    options: RegistryOptions, env: Mapping[str, str], *, aws: AwsClients | None = None
) -> EcrRegistry:
    """An ECR registry whose clients `aws(region, profile)` makes (default: the standard boto3
    chain), on first use: a login the token cache answers never imports boto3."""
    from shipit.adapters import ecr

    region = ecr.resolve_region(options.region, options.profile, env)
    cache = ecr.TokenCache(ecr.default_token_cache_path(env))
    return ecr.EcrRegistry(
        None,
        None,
        clients=partial(aws or ecr.make_clients, region, options.profile),
        region=region,
        registry_id=options.registry_id,
        token_cache=cache,
        endpoint_id=env_endpoint(env),
        identity=env_identity(options, env),
    )


_ENDPOINT_SETTINGS = ("endpoint_url", "use_fips_endpoint", "use_dualstack_endpoint")


def env_endpoint(env: Mapping[str, str]) -> str:
    """The ECR endpoint as the environment names it, for the token-cache key.

    AWS_ENDPOINT_URL_ECR or AWS_ENDPOINT_URL when set; "aws" (the public endpoint of the
    region) when nothing could move it; "" - ask the client - when the AWS config file or the
    environment has endpoint settings only boto3 resolves.
    """
    if env.get("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "").strip().lower() not in ("", "false"):
        return ""
    explicit = env.get("AWS_ENDPOINT_URL_ECR") or env.get("AWS_ENDPOINT_URL")
    if explicit:
        return explicit
    if any(env.get(f"AWS_{name.upper()}", "").strip() for name in _ENDPOINT_SETTINGS[1:]):
        return ""
    config = env.get("AWS_CONFIG_FILE") or os.path.join(env.get("HOME", "~"), ".aws", "config")
    try:
        with open(os.path.expanduser(config), encoding="utf-8", errors="replace") as handle:
            text = handle.read().lower()
    except OSError:
        return "aws"
    return "" if any(name in text for name in _ENDPOINT_SETTINGS) else "aws"


def env_identity(options: RegistryOptions, env: Mapping[str, str]) -> str | None:
    """The AWS identity the boto3 chain will use, when the environment alone decides it.

    Without an explicit profile, botocore's first credential provider is the environment:
    AWS_ACCESS_KEY_ID with AWS_SECRET_ACCESS_KEY. The access key id (an identifier, not a
    secret) then names the identity exactly as the client's own credentials would. With a
    profile, SSO, a role or instance metadata, only boto3 can tell: None.
    """
    key_id = env.get("AWS_ACCESS_KEY_ID", "").strip()
    if options.profile is None and key_id and env.get("AWS_SECRET_ACCESS_KEY", "").strip():
        return f"key:{key_id}"
    return None


def make_destinations(
    options: RegistryOptions, env: Mapping[str, str], *, ecr_factory: Any = make_ecr_registry
) -> list[Destination]:
    """Parse every --registry value (all validated before anything is contacted)."""
    if not options.registries:
        raise UsageError("no registry: pass --registry ecr|dockerhub|HOST[:PORT][/NAMESPACE]")
    if options.scan_gate and options.scan_gate.upper() not in SEVERITIES:
        raise UsageError(
            f"--scan-gate '{options.scan_gate}' must be one of {', '.join(SEVERITIES[1:])}"
        )
    kinds = [parse_kind(value) for value in options.registries]
    hygiene = (
        options.lifecycle_keep is not None
        or options.lifecycle_untagged_days is not None
        or options.scan_gate
    )
    if hygiene and "ecr" not in kinds:
        raise UsageError(
            "--lifecycle-keep, --lifecycle-untagged-days and --scan-gate need --registry ecr"
        )
    if options.repository is not None and not PATH_RE.match(options.repository):
        raise UsageError(
            f"invalid repository '{options.repository}': use lowercase letters, digits and "
            "separators (. _ -), with / between path components, e.g. 'web' or 'team/web'"
        )
    destinations: list[Destination | None] = []  # None: ECR, built once all is valid
    for kind in dict.fromkeys(kinds):
        if isinstance(kind, RegistryTarget) and kind.host in _DOCKER_HUB_HOSTS:
            # 'docker.io/acme' is Docker Hub with namespace acme (and Docker Hub credentials).
            hub_options = replace(options, namespace=kind.path or options.namespace)
            destinations.append(DockerHub(options=hub_options, env=env))
        elif kind == "dockerhub":
            destinations.append(DockerHub(options=options, env=env))
        elif isinstance(kind, RegistryTarget):
            destinations.append(GenericRegistry(target=kind, options=options, env=env))
        else:
            destinations.append(None)
    for destination in destinations:
        if isinstance(destination, DockerHub) and (
            destination.options.namespace or env.get("DOCKERHUB_NAMESPACE")
        ):
            destination.namespace()  # an explicit namespace is checked before any contact
    return [
        d if d is not None else Ecr(registry=ecr_factory(options, env), options=options)
        for d in destinations
    ]
