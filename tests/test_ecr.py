"""shipit.adapters.ecr against moto's in-process ECR/STS (mock_aws) and botocore Stubbers: no network."""

from __future__ import annotations

import base64
import json
import os
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import (
    EndpointConnectionError,
    NoCredentialsError,
    PartialCredentialsError,
    ReadTimeoutError,
)
from botocore.stub import Stubber
from moto import mock_aws

from shipit import __version__
from shipit.adapters.ecr import (
    IAM_PUSH_ACTIONS,
    EcrCredentials,
    EcrRegistry,
    TokenCache,
    default_token_cache_path,
    make_clients,
    push_policy,
    resolve_region,
)
from shipit.errors import AuthError, RegistryError, UsageError
from tests.fakes import AWS_SECRET, isolate_aws

REGION = "us-east-1"
ACCOUNT = "123456789012"  # moto's default account
SECRET = AWS_SECRET
MANIFEST_TYPE = "application/vnd.docker.distribution.manifest.v2+json"
# moto hands out tokens that expired in 2015: clocks before that make them look fresh.
BEFORE_MOTO_EXPIRY = datetime(2014, 6, 1, tzinfo=UTC)


@pytest.fixture(autouse=True)
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    isolate_aws(monkeypatch, tmp_path, REGION)
    monkeypatch.delenv("SHIPIT_CACHE_DIR", raising=False)


@pytest.fixture
def clients() -> Iterator[tuple[Any, Any]]:
    with mock_aws():
        yield make_clients(REGION, None)


@pytest.fixture
def ecr(clients: tuple[Any, Any]) -> Any:
    return clients[0]


@pytest.fixture
def sts(clients: tuple[Any, Any]) -> Any:
    return clients[1]


def count_calls(client: Any, operation: str) -> list[dict[str, Any]]:
    """Record the API parameters of every ``operation`` ("ecr.GetAuthorizationToken") call."""
    seen: list[dict[str, Any]] = []

    def hook(params: dict[str, Any], **_: Any) -> None:
        seen.append(params)

    client.meta.events.register(f"provide-client-params.{operation}", hook)
    return seen


def raise_on(client: Any, operation: str, exc: Exception) -> None:
    def hook(**_: Any) -> None:
        raise exc

    client.meta.events.register(f"before-call.{operation}", hook)


def manifest(layer: str) -> str:
    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": MANIFEST_TYPE,
            "config": {
                "mediaType": "application/vnd.docker.container.image.v1+json",
                "size": 7023,
                "digest": "sha256:" + "c" * 64,
            },
            "layers": [
                {
                    "mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                    "size": 32654,
                    "digest": "sha256:" + layer * 64,
                }
            ],
        }
    )


def push_fake(ecr: Any, repository: str, tag: str, layer: str = "b") -> str:
    response = ecr.put_image(repositoryName=repository, imageManifest=manifest(layer), imageTag=tag)
    return str(response["image"]["imageId"]["imageDigest"])


def assert_no_secret(err: Exception, *secrets: str) -> None:
    text = " ".join([str(err), getattr(err, "hint", None) or "", *getattr(err, "details", [])])
    for secret in (SECRET, *secrets):
        assert secret not in text


# --- repositories ---------------------------------------------------------------------------


def test_creates_repository_with_scan_on_push_aes256_and_mutable_tags(ecr: Any, sts: Any) -> None:
    result = EcrRegistry(ecr, sts, region=REGION).ensure_repository("team/app")
    assert result.created is True
    assert result.name == "team/app"
    assert result.registry_id == ACCOUNT
    assert result.uri == f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/team/app"
    repo = ecr.describe_repositories(repositoryNames=["team/app"])["repositories"][0]
    assert repo["imageScanningConfiguration"] == {"scanOnPush": True}
    assert repo["encryptionConfiguration"]["encryptionType"] == "AES256"
    assert repo["imageTagMutability"] == "MUTABLE"


def test_immutable_tags_and_no_scan(ecr: Any, sts: Any) -> None:
    EcrRegistry(ecr, sts, region=REGION).ensure_repository(
        "frozen", immutable_tags=True, scan_on_push=False
    )
    repo = ecr.describe_repositories(repositoryNames=["frozen"])["repositories"][0]
    assert repo["imageTagMutability"] == "IMMUTABLE"
    assert repo["imageScanningConfiguration"] == {"scanOnPush": False}


def test_kms_encryption(ecr: Any, sts: Any) -> None:
    key = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    EcrRegistry(ecr, sts, region=REGION).ensure_repository("secure", kms_key=key)
    repo = ecr.describe_repositories(repositoryNames=["secure"])["repositories"][0]
    assert repo["encryptionConfiguration"] == {"encryptionType": "KMS", "kmsKey": key}


def test_existing_repository_is_reused_without_create(ecr: Any, sts: Any) -> None:
    registry = EcrRegistry(ecr, sts, region=REGION)
    creates = count_calls(ecr, "ecr.CreateRepository")
    first = registry.ensure_repository("app")
    second = registry.ensure_repository("app")
    third = EcrRegistry(ecr, sts, region=REGION).ensure_repository("app", create=False)
    assert first.created is True
    assert second.created is False and third.created is False
    assert second.uri == first.uri == third.uri
    assert len(creates) == 1
    assert creates[0]["registryId"] == ACCOUNT


def test_no_create_on_missing_repository_is_registry_error(ecr: Any, sts: Any) -> None:
    creates = count_calls(ecr, "ecr.CreateRepository")
    with pytest.raises(RegistryError) as info:
        EcrRegistry(ecr, sts, region=REGION).ensure_repository("missing", create=False)
    assert info.value.exit_code == 6
    assert "'missing'" in str(info.value)
    assert f"{ACCOUNT}/{REGION}" in str(info.value)
    assert "--no-create-repo" in str(info.value)
    assert creates == []


def test_invalid_repository_name_is_usage_error(ecr: Any, sts: Any) -> None:
    with pytest.raises(UsageError):
        EcrRegistry(ecr, sts, region=REGION, registry_id=ACCOUNT).ensure_repository("Bad Name")


def test_create_race_reuses_repository(ecr: Any, sts: Any) -> None:
    registry = EcrRegistry(ecr, sts, region=REGION, registry_id=ACCOUNT)
    repo = {
        "repositoryName": "app",
        "registryId": ACCOUNT,
        "repositoryUri": f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/app",
    }
    with Stubber(ecr) as stub:
        stub.add_client_error("describe_repositories", "RepositoryNotFoundException")
        stub.add_client_error("create_repository", "RepositoryAlreadyExistsException")
        stub.add_response("describe_repositories", {"repositories": [repo]})
        result = registry.ensure_repository("app")
        stub.assert_no_pending_responses()
    assert result.created is False
    assert result.uri == repo["repositoryUri"]


# --- credentials ----------------------------------------------------------------------------


def test_token_is_decoded_and_password_hidden(ecr: Any, sts: Any) -> None:
    creds = EcrRegistry(ecr, sts, region=REGION).credentials()
    assert creds.username == "AWS"
    assert creds.password == f"{ACCOUNT}-auth-token"
    assert creds.registry == f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com"
    assert "://" not in creds.registry
    assert creds.expires_at.tzinfo is not None
    assert creds.expires_at.utcoffset() == timedelta(0)
    assert creds.password not in repr(creds)
    assert creds.password not in str(creds)


def test_credentials_reused_in_memory(ecr: Any, sts: Any) -> None:
    calls = count_calls(ecr, "ecr.GetAuthorizationToken")
    registry = EcrRegistry(ecr, sts, region=REGION)
    assert registry.credentials() is registry.credentials()
    assert len(calls) == 1
    # The caller's own registry, as `aws ecr get-login-password` asks: the token names it.
    assert "registryIds" not in calls[0]
    assert registry.account_id() == ACCOUNT


def test_token_cache_serves_a_second_instance(ecr: Any, sts: Any, tmp_path: Path) -> None:
    path = tmp_path / "cache" / "ecr-tokens.json"
    calls = count_calls(ecr, "ecr.GetAuthorizationToken")
    first = EcrRegistry(
        ecr, sts, region=REGION, token_cache=TokenCache(path, now=lambda: BEFORE_MOTO_EXPIRY)
    ).credentials()
    assert len(calls) == 1
    second = EcrRegistry(
        ecr, sts, region=REGION, token_cache=TokenCache(path, now=lambda: BEFORE_MOTO_EXPIRY)
    ).credentials()
    assert len(calls) == 1  # zero calls for the second instance
    assert second == first
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert [p.name for p in path.parent.iterdir()] == ["ecr-tokens.json"]  # no temp left


def test_expired_cache_entry_fetches_again(ecr: Any, sts: Any, tmp_path: Path) -> None:
    path = tmp_path / "ecr-tokens.json"
    calls = count_calls(ecr, "ecr.GetAuthorizationToken")
    EcrRegistry(
        ecr, sts, region=REGION, token_cache=TokenCache(path, now=lambda: BEFORE_MOTO_EXPIRY)
    ).credentials()
    # moto's token expires 2015-01-01T00:00Z: 5 minutes before is inside the 10-minute margin.
    late = TokenCache(path, now=lambda: datetime(2014, 12, 31, 23, 55, tzinfo=UTC))
    EcrRegistry(ecr, sts, region=REGION, token_cache=late).credentials()
    assert len(calls) == 2


@pytest.mark.parametrize("content", ["{not json", "[]", '{"version": 1, "entries": 3}', ""])
def test_corrupt_cache_file_fetches_again(ecr: Any, sts: Any, tmp_path: Path, content: str) -> None:
    path = tmp_path / "ecr-tokens.json"
    path.write_text(content)
    calls = count_calls(ecr, "ecr.GetAuthorizationToken")
    cache = TokenCache(path, now=lambda: BEFORE_MOTO_EXPIRY)
    creds = EcrRegistry(ecr, sts, region=REGION, token_cache=cache).credentials()
    assert len(calls) == 1
    assert creds.username == "AWS"
    assert json.loads(path.read_text())["version"] == 1  # rewritten, usable again


def test_refresh_bypasses_and_replaces_cache(ecr: Any, sts: Any, tmp_path: Path) -> None:
    path = tmp_path / "ecr-tokens.json"
    calls = count_calls(ecr, "ecr.GetAuthorizationToken")
    registry = EcrRegistry(
        ecr, sts, region=REGION, token_cache=TokenCache(path, now=lambda: BEFORE_MOTO_EXPIRY)
    )
    registry.credentials()
    registry.credentials(refresh=True)
    assert len(calls) == 2
    entries = json.loads(path.read_text())["entries"]
    assert len(entries) == 1


def test_cache_key_separates_identities(ecr: Any, sts: Any, tmp_path: Path) -> None:
    path = tmp_path / "ecr-tokens.json"
    calls = count_calls(ecr, "ecr.GetAuthorizationToken")
    for identity in ("arn:aws:iam::1:user/alice", "arn:aws:iam::1:user/bob"):
        cache = TokenCache(path, now=lambda: BEFORE_MOTO_EXPIRY)
        EcrRegistry(ecr, sts, region=REGION, token_cache=cache, identity=identity).credentials()
    assert len(calls) == 2
    text = path.read_text()
    assert "alice" not in text and "AKIASHIPITTESTKEY000" not in text  # identities hashed
    assert SECRET not in text


def test_token_cache_put_get_invalidate_and_unwritable(tmp_path: Path) -> None:
    now = datetime(2030, 1, 1, tzinfo=UTC)
    creds = EcrCredentials("r.example", "AWS", "pw", now + timedelta(hours=1))
    cache = TokenCache(tmp_path / "deep" / "tokens.json", now=lambda: now)
    assert cache.get("k") is None
    cache.put("k", creds)
    assert cache.get("k") == creds
    cache.invalidate("k")
    assert cache.get("k") is None
    blocker = tmp_path / "file"
    blocker.write_text("x")
    broken = TokenCache(blocker / "tokens.json", now=lambda: now)
    broken.put("k", creds)  # must not raise
    assert broken.get("k") is None


def test_default_token_cache_path(tmp_path: Path) -> None:
    assert default_token_cache_path({"SHIPIT_CACHE_DIR": str(tmp_path)}) == (
        tmp_path / "ecr-tokens.json"
    )
    assert default_token_cache_path({"XDG_CACHE_HOME": str(tmp_path)}) == (
        tmp_path / "shipit" / "ecr-tokens.json"
    )
    assert default_token_cache_path({}) == Path.home() / ".cache" / "shipit" / "ecr-tokens.json"


def test_cross_account_registry_makes_no_sts_call(ecr: Any, sts: Any) -> None:
    sts_calls = count_calls(sts, "sts.*")
    registry = EcrRegistry(ecr, sts, region=REGION, registry_id="210987654321")
    assert registry.registry_host == f"210987654321.dkr.ecr.{REGION}.amazonaws.com"
    creds = registry.credentials()
    assert creds.registry == registry.registry_host
    assert creds.password == "210987654321-auth-token"
    assert sts_calls == []


def test_account_id_uses_one_sts_call(ecr: Any, sts: Any) -> None:
    sts_calls = count_calls(sts, "sts.GetCallerIdentity")
    registry = EcrRegistry(ecr, sts, region=REGION)
    assert registry.account_id() == ACCOUNT
    assert registry.registry_host.startswith(ACCOUNT)
    assert registry.caller_arn().startswith("arn:aws:")
    assert len(sts_calls) == 1


def test_malformed_token_is_registry_error(ecr: Any, sts: Any) -> None:
    registry = EcrRegistry(ecr, sts, region=REGION, registry_id=ACCOUNT)
    with Stubber(ecr) as stub:
        stub.add_response(
            "get_authorization_token",
            {"authorizationData": [{"authorizationToken": "bm9jb2xvbg==", "proxyEndpoint": "x"}]},
        )
        with pytest.raises(RegistryError):
            registry.credentials()


# --- region and clients ---------------------------------------------------------------------


def test_resolve_region_precedence(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    env = {"AWS_REGION": "eu-west-1", "AWS_DEFAULT_REGION": "eu-west-2"}
    assert resolve_region("ap-south-1", None, env) == "ap-south-1"
    assert resolve_region(None, None, env) == "eu-west-1"
    assert resolve_region(None, None, {"AWS_DEFAULT_REGION": "eu-west-2"}) == "eu-west-2"
    config = tmp_path / "config"
    config.write_text("[profile dev]\nregion = ca-central-1\n")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    assert resolve_region(None, "dev", {}) == "ca-central-1"


def test_missing_region_is_usage_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    with pytest.raises(UsageError) as info:
        resolve_region(None, None, {})
    assert info.value.exit_code == 2
    assert "--region" in str(info.value)


def test_unknown_profile_is_usage_error() -> None:
    with pytest.raises(UsageError):
        resolve_region(None, "nope", {})
    with pytest.raises(UsageError):
        make_clients(REGION, "nope")


def test_make_clients_config() -> None:
    ecr, sts = make_clients("eu-central-1", None)
    assert ecr.meta.region_name == "eu-central-1"
    config: Any = ecr.meta.config
    # botocore stores Config(retries={"max_attempts": 5}) as 5 retries = 6 attempts in all.
    assert config.retries == {"mode": "standard", "total_max_attempts": 6}
    assert config.connect_timeout == 10
    assert config.read_timeout == 30
    assert f"shipit/{__version__}" in config.user_agent_extra
    assert sts.meta.service_model.service_name == "sts"


def test_import_does_not_load_boto3() -> None:
    code = (
        "import sys, shipit.adapters.ecr; print('boto3' in sys.modules, 'botocore' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


# --- error mapping --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "exc",
    [
        NoCredentialsError(),
        PartialCredentialsError(provider="env", cred_var="AWS_SECRET_ACCESS_KEY"),
    ],
)
def test_no_credentials_is_auth_error(ecr: Any, sts: Any, exc: Exception) -> None:
    raise_on(ecr, "ecr.GetAuthorizationToken", exc)  # the first AWS call of a push
    raise_on(sts, "sts.GetCallerIdentity", exc)
    with pytest.raises(AuthError) as info:
        EcrRegistry(ecr, sts, region=REGION).ensure_repository("app")
    assert info.value.exit_code == 3
    assert "AWS_ACCESS_KEY_ID" in str(info.value)
    assert info.value.__cause__ is exc


AccessCase = tuple[str, str, Callable[[EcrRegistry], object], list[tuple[str, dict[str, Any]]]]
REPO = {"repositoryName": "app", "registryId": ACCOUNT, "repositoryUri": "u"}
IMAGE = {"imageManifest": manifest("b"), "imageManifestMediaType": MANIFEST_TYPE}
ACCESS_CASES: list[AccessCase] = [
    ("describe_repositories", "ecr:DescribeRepositories", lambda r: r.ensure_repository("app"), []),
    (
        "create_repository",
        "ecr:CreateRepository",
        lambda r: r.ensure_repository("app"),
        [("describe_repositories!", {})],
    ),
    ("get_authorization_token", "ecr:GetAuthorizationToken", lambda r: r.credentials(), []),
    ("describe_images", "ecr:DescribeImages", lambda r: r.image_digest("app", "v1"), []),
    ("batch_get_image", "ecr:BatchGetImage", lambda r: r.put_tag("app", "sha256:x", "v2"), []),
    (
        "put_image",
        "ecr:PutImage",
        lambda r: r.put_tag("app", "sha256:x", "v2"),
        [("batch_get_image", {"images": [IMAGE]})],
    ),
    (
        "put_lifecycle_policy",
        "ecr:PutLifecyclePolicy",
        lambda r: r.set_lifecycle_policy("app", keep_tagged=5, expire_untagged_days=None),
        [],
    ),
    (
        "describe_image_scan_findings",
        "ecr:DescribeImageScanFindings",
        lambda r: r.scan_findings("app", "sha256:x", timeout=1),
        [],
    ),
]


@pytest.mark.parametrize(("operation", "action", "call", "before"), ACCESS_CASES)
@pytest.mark.parametrize("code", ["AccessDeniedException", "AccessDenied"])
def test_access_denied_names_the_action(
    ecr: Any,
    sts: Any,
    operation: str,
    action: str,
    call: Callable[[EcrRegistry], object],
    before: list[tuple[str, dict[str, Any]]],
    code: str,
) -> None:
    registry = EcrRegistry(ecr, sts, region=REGION, registry_id=ACCOUNT)
    with Stubber(ecr) as stub:
        for op, response in before:
            if op.endswith("!"):
                stub.add_client_error(op[:-1], "RepositoryNotFoundException")
            else:
                stub.add_response(op, response)
        stub.add_client_error(
            operation,
            service_error_code=code,
            service_message=f"User: arn:aws:iam::{ACCOUNT}:user/ci is not authorized",
            http_status_code=400,
        )
        with pytest.raises(AuthError) as info:
            call(registry)
    err = info.value
    assert err.exit_code == 3
    assert action in str(err)
    assert "\n" not in str(err)
    assert err.hint is not None
    for needed in IAM_PUSH_ACTIONS:
        assert needed in err.hint
    assert_no_secret(err, f"{ACCOUNT}-auth-token")


def test_sts_access_denied_names_the_action(ecr: Any, sts: Any) -> None:
    with Stubber(sts) as stub:
        stub.add_client_error("get_caller_identity", "AccessDenied", http_status_code=403)
        with pytest.raises(AuthError) as info:
            EcrRegistry(ecr, sts, region=REGION).caller_arn()
    assert "sts:GetCallerIdentity" in str(info.value)


def test_account_from_the_token_host_else_sts(ecr: Any, sts: Any) -> None:
    sts_calls = count_calls(sts, "sts.GetCallerIdentity")
    registry = EcrRegistry(ecr, sts, region=REGION)
    assert registry.account_id() == ACCOUNT
    assert registry.registry_host == f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com"
    assert sts_calls == []  # the token named the registry
    token = base64.b64encode(b"AWS:pw").decode()
    with Stubber(ecr) as stub:
        stub.add_response(
            "get_authorization_token",
            {
                "authorizationData": [
                    {"authorizationToken": token, "proxyEndpoint": "https://localhost:4510"}
                ]
            },
            {},
        )
        other = EcrRegistry(ecr, sts, region=REGION)
        assert other.credentials().registry == "localhost:4510"
        assert other.account_id() == ACCOUNT  # a host without an account: ask STS
    assert len(sts_calls) == 1


@pytest.mark.parametrize(
    ("code", "status", "error_type", "kind", "transient"),
    [
        ("ThrottlingException", 400, RegistryError, "throttled", True),
        ("TooManyRequestsException", 429, RegistryError, "throttled", True),
        ("RequestLimitExceeded", 400, RegistryError, "throttled", True),
        ("ServerException", 500, RegistryError, "server", True),
        ("ServiceUnavailable", 503, RegistryError, "server", True),
        ("ExpiredTokenException", 400, AuthError, None, None),
        ("UnrecognizedClientException", 400, AuthError, None, None),
        ("InvalidParameterException", 400, UsageError, None, None),
        ("LimitExceededException", 400, RegistryError, "registry", False),
    ],
)
def test_client_error_mapping(
    ecr: Any,
    sts: Any,
    code: str,
    status: int,
    error_type: type[Exception],
    kind: str | None,
    transient: bool | None,
) -> None:
    registry = EcrRegistry(ecr, sts, region=REGION, registry_id=ACCOUNT)
    with Stubber(ecr) as stub:
        stub.add_client_error(
            "get_authorization_token", code, service_message="nope", http_status_code=status
        )
        with pytest.raises(error_type) as info:
            registry.credentials()
    err = info.value
    assert "ecr:GetAuthorizationToken" in str(err) or error_type is UsageError
    if isinstance(err, RegistryError):
        assert err.kind == kind
        assert err.transient is transient
        if kind == "registry":
            assert code in str(err)
    if error_type is AuthError:
        assert "expired or invalid" in str(err)
    assert_no_secret(err)


def test_unreachable_endpoint_and_timeout(ecr: Any, sts: Any) -> None:
    url = "https://api.ecr.us-east-1.amazonaws.com/"
    registry = EcrRegistry(ecr, sts, region=REGION, registry_id=ACCOUNT)
    raise_on(ecr, "ecr.GetAuthorizationToken", EndpointConnectionError(endpoint_url=url))
    with pytest.raises(RegistryError) as info:
        registry.credentials()
    assert info.value.transient and info.value.kind == "unreachable"
    assert url in str(info.value)
    raise_on(ecr, "ecr.DescribeImages", ReadTimeoutError(endpoint_url=url))
    with pytest.raises(RegistryError) as info:
        registry.image_digest("app", "v1")
    assert info.value.transient and info.value.kind == "timeout"


# --- images ---------------------------------------------------------------------------------


def test_image_digest(ecr: Any, sts: Any) -> None:
    registry = EcrRegistry(ecr, sts, region=REGION)
    registry.ensure_repository("app")
    digest = push_fake(ecr, "app", "v1")
    assert registry.image_digest("app", "v1") == digest
    assert registry.image_digest("app", "nope") is None


def test_put_tag_adds_a_second_tag(ecr: Any, sts: Any) -> None:
    registry = EcrRegistry(ecr, sts, region=REGION)
    registry.ensure_repository("app")
    digest = push_fake(ecr, "app", "v1")
    calls = count_calls(ecr, "ecr.BatchGetImage")
    assert registry.put_tag("app", digest, "latest") == digest
    assert "application/vnd.oci.image.index.v1+json" in calls[0]["acceptedMediaTypes"]
    details = ecr.describe_images(repositoryName="app")["imageDetails"]
    assert len(details) == 1
    assert sorted(details[0]["imageTags"]) == ["latest", "v1"]
    # Same tag again on the same digest: success, nothing changes.
    assert registry.put_tag("app", digest, "latest") == digest
    assert registry.image_digest("app", "latest") == digest


def test_put_tag_moves_a_mutable_tag(ecr: Any, sts: Any) -> None:
    registry = EcrRegistry(ecr, sts, region=REGION)
    registry.ensure_repository("app")
    old = push_fake(ecr, "app", "stable", layer="b")
    new = push_fake(ecr, "app", "v2", layer="d")
    assert registry.put_tag("app", new, "stable") == new
    assert registry.image_digest("app", "stable") == new
    assert old != new


def test_put_tag_immutable_conflict(ecr: Any, sts: Any) -> None:
    registry = EcrRegistry(ecr, sts, region=REGION)
    registry.ensure_repository("frozen", immutable_tags=True)
    first = push_fake(ecr, "frozen", "v1", layer="b")
    second = push_fake(ecr, "frozen", "v2", layer="d")
    assert registry.put_tag("frozen", first, "v1") == first  # already there: fine
    with pytest.raises(RegistryError) as info:
        registry.put_tag("frozen", second, "v1")
    assert info.value.kind == "immutable_tag"
    assert "'v1'" in str(info.value)
    assert "kept the existing image" in str(info.value)
    assert registry.image_digest("frozen", "v1") == first


def test_put_tag_image_tag_already_exists_from_real_ecr(ecr: Any, sts: Any) -> None:
    registry = EcrRegistry(ecr, sts, region=REGION, registry_id=ACCOUNT)
    with Stubber(ecr) as stub:
        stub.add_response("batch_get_image", {"images": [IMAGE]})
        stub.add_client_error("put_image", "ImageTagAlreadyExistsException")
        with pytest.raises(RegistryError) as info:
            registry.put_tag("frozen", "sha256:" + "1" * 64, "v1")
    assert info.value.kind == "immutable_tag"


def test_put_tag_missing_digest(ecr: Any, sts: Any) -> None:
    registry = EcrRegistry(ecr, sts, region=REGION)
    registry.ensure_repository("app")
    with pytest.raises(RegistryError) as info:
        registry.put_tag("app", "sha256:" + "0" * 64, "v1")
    assert info.value.kind == "not_found"


# --- lifecycle, scanning, IAM ---------------------------------------------------------------


def test_lifecycle_policy_round_trip(ecr: Any, sts: Any) -> None:
    registry = EcrRegistry(ecr, sts, region=REGION)
    registry.ensure_repository("app")
    policy = registry.set_lifecycle_policy("app", keep_tagged=20, expire_untagged_days=7)
    stored = json.loads(ecr.get_lifecycle_policy(repositoryName="app")["lifecyclePolicyText"])
    assert stored == policy
    untagged, tagged = policy["rules"]
    assert untagged["rulePriority"] == 1
    assert untagged["selection"] == {
        "tagStatus": "untagged",
        "countType": "sinceImagePushed",
        "countUnit": "days",
        "countNumber": 7,
    }
    assert tagged["selection"]["tagStatus"] == "tagged"
    assert tagged["selection"]["tagPatternList"] == ["*"]
    assert tagged["selection"]["countType"] == "imageCountMoreThan"
    assert tagged["selection"]["countNumber"] == 20
    only = registry.set_lifecycle_policy("app", keep_tagged=3, expire_untagged_days=None)
    assert [r["selection"]["tagStatus"] for r in only["rules"]] == ["tagged"]
    with pytest.raises(UsageError):
        registry.set_lifecycle_policy("app", keep_tagged=None, expire_untagged_days=None)
    with pytest.raises(UsageError):
        registry.set_lifecycle_policy("app", keep_tagged=0, expire_untagged_days=None)


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0
        self.sleeps: list[float] = []

    def now(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.t += seconds


def scan_response(status: str, counts: dict[str, int] | None = None) -> dict[str, Any]:
    response: dict[str, Any] = {
        "registryId": ACCOUNT,
        "repositoryName": "app",
        "imageId": {"imageDigest": "sha256:" + "a" * 64},
        "imageScanStatus": {"status": status, "description": "..."},
    }
    if counts is not None:
        response["imageScanFindings"] = {"findingSeverityCounts": counts}
    return response


def test_scan_findings_polls_until_complete(ecr: Any, sts: Any) -> None:
    clock = FakeClock()
    registry = EcrRegistry(ecr, sts, region=REGION, registry_id=ACCOUNT)
    digest = "sha256:" + "a" * 64
    expected = {"registryId": ACCOUNT, "repositoryName": "app", "imageId": {"imageDigest": digest}}
    with Stubber(ecr) as stub:
        stub.add_client_error("describe_image_scan_findings", "ScanNotFoundException")
        stub.add_response("describe_image_scan_findings", scan_response("IN_PROGRESS"), expected)
        stub.add_response(
            "describe_image_scan_findings",
            scan_response("COMPLETE", {"CRITICAL": 1, "HIGH": 3}),
            expected,
        )
        counts = registry.scan_findings(
            "app", digest, timeout=60, poll=5, sleep=clock.sleep, now=clock.now
        )
        stub.assert_no_pending_responses()
    assert counts == {"CRITICAL": 1, "HIGH": 3}
    assert clock.sleeps == [5, 5]


def test_scan_findings_complete_without_findings(ecr: Any, sts: Any) -> None:
    registry = EcrRegistry(ecr, sts, region=REGION, registry_id=ACCOUNT)
    with Stubber(ecr) as stub:
        stub.add_response("describe_image_scan_findings", scan_response("COMPLETE"))
        assert registry.scan_findings("app", "sha256:x", timeout=1) == {}


def test_scan_findings_timeout(ecr: Any, sts: Any) -> None:
    clock = FakeClock()
    registry = EcrRegistry(ecr, sts, region=REGION, registry_id=ACCOUNT)
    with Stubber(ecr) as stub:
        for _ in range(5):
            stub.add_response("describe_image_scan_findings", scan_response("IN_PROGRESS"))
        with pytest.raises(RegistryError) as info:
            registry.scan_findings(
                "app", "sha256:x", timeout=12, poll=5, sleep=clock.sleep, now=clock.now
            )
    assert info.value.kind == "timeout"
    assert "12s" in str(info.value)
    assert clock.sleeps == [5, 5, 2]  # never sleeps past the deadline


def test_scan_findings_failed(ecr: Any, sts: Any) -> None:
    registry = EcrRegistry(ecr, sts, region=REGION, registry_id=ACCOUNT)
    with Stubber(ecr) as stub:
        stub.add_response("describe_image_scan_findings", scan_response("FAILED"))
        with pytest.raises(RegistryError) as info:
            registry.scan_findings("app", "sha256:x", timeout=10, sleep=lambda _s: None)
    assert info.value.kind == "scan_failed"
    assert "FAILED" in str(info.value)


def test_push_policy_shape() -> None:
    policy = push_policy("team/app", region=REGION, account=ACCOUNT)
    assert policy["Version"] == "2012-10-17"
    login, push = policy["Statement"]
    assert login["Resource"] == "*"
    assert "ecr:GetAuthorizationToken" in login["Action"]
    assert push["Resource"] == f"arn:aws:ecr:{REGION}:{ACCOUNT}:repository/team/app"
    assert "ecr:GetAuthorizationToken" not in push["Action"]
    assert set(login["Action"]) | set(push["Action"]) == set(IAM_PUSH_ACTIONS)
    assert all(stmt["Effect"] == "Allow" for stmt in policy["Statement"])
    arn = f"arn:aws-cn:ecr:cn-north-1:{ACCOUNT}:repository/app"
    assert push_policy(arn)["Statement"][1]["Resource"] == arn
    assert push_policy("app")["Statement"][1]["Resource"] == "arn:aws:ecr:*:*:repository/app"


def test_environment_is_clean() -> None:
    assert "AWS_ENDPOINT_URL" not in os.environ


def test_warm_login_makes_no_aws_call(ecr: Any, sts: Any, tmp_path: Path) -> None:
    from shipit.output.reporter import OutputMode, Reporter
    from shipit.services.registries import Ecr, RegistryOptions

    path = tmp_path / "ecr-tokens.json"
    cache = TokenCache(path, now=lambda: BEFORE_MOTO_EXPIRY)
    EcrRegistry(ecr, sts, region=REGION, token_cache=cache).credentials()  # cold: fills the cache
    token_calls = count_calls(ecr, "ecr.GetAuthorizationToken")
    sts_calls = count_calls(sts, "sts.GetCallerIdentity")
    warm = Ecr(
        registry=EcrRegistry(ecr, sts, region=REGION, token_cache=cache), options=RegistryOptions()
    )
    auth = warm.authenticate(Reporter(OutputMode(quiet=True)))
    assert auth is not None and auth.username == "AWS"
    assert warm.host == f"123456789012.dkr.ecr.{REGION}.amazonaws.com"
    assert token_calls == [] and sts_calls == []


def _lazy_registry(
    cache: TokenCache, made: list[int], env: dict[str, str], *, profile: str | None = None
) -> EcrRegistry:
    from shipit.services.registries import RegistryOptions, env_endpoint, env_identity

    def factory() -> tuple[Any, Any]:
        made.append(1)
        return make_clients(REGION, None)

    options = RegistryOptions(profile=profile)
    return EcrRegistry(
        None,
        None,
        clients=factory,
        region=REGION,
        token_cache=cache,
        endpoint_id=env_endpoint(env),
        identity=env_identity(options, env),
    )


def test_warm_login_with_env_credentials_creates_no_aws_client(tmp_path: Path) -> None:
    """With the access key in the environment, the token cache is read before boto3 is."""
    cache = TokenCache(tmp_path / "ecr-tokens.json", now=lambda: BEFORE_MOTO_EXPIRY)
    made: list[int] = []
    with mock_aws():
        env = dict(os.environ)  # mock_aws sets its own access key
        cold = _lazy_registry(cache, made, env)
        first = cold.credentials()
        assert made == [1]  # a miss: the clients are made and ECR asked
        made.clear()
        warm = _lazy_registry(cache, made, env)
        assert warm.credentials() == first
        assert made == []  # served from the cache: no client, no import of boto3 needed
        # The key is the one a registry built on real clients computes from their credentials.
        ecr_client, sts_client = make_clients(REGION, None)
        eager = EcrRegistry(ecr_client, sts_client, region=REGION, token_cache=cache)
        eager._endpoint_id = "aws"
        assert eager._cache_key() == warm._cache_key()
        assert eager.credentials() == first


def test_warm_login_with_a_profile_asks_boto3_for_the_identity(tmp_path: Path) -> None:
    cache = TokenCache(tmp_path / "ecr-tokens.json", now=lambda: BEFORE_MOTO_EXPIRY)
    made: list[int] = []
    with mock_aws():
        env = dict(os.environ)
        _lazy_registry(cache, made, env, profile="ci").credentials()
    # A profile may name other credentials than the environment's: only boto3 can tell.
    assert made == [1]


@pytest.mark.parametrize(
    ("extra", "config", "expected"),
    [
        ({}, None, "aws"),
        ({}, "[default]\nregion = eu-west-1\n", "aws"),
        ({"AWS_ENDPOINT_URL": "http://127.0.0.1:5000"}, None, "http://127.0.0.1:5000"),
        (
            {"AWS_ENDPOINT_URL": "http://a", "AWS_ENDPOINT_URL_ECR": "http://b"},
            None,
            "http://b",
        ),
        ({"AWS_ENDPOINT_URL": "http://a", "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS": "true"}, None, ""),
        ({"AWS_USE_FIPS_ENDPOINT": "true"}, None, ""),
        ({}, "[default]\nendpoint_url = http://127.0.0.1:4566\n", ""),
        ({}, "[default]\nuse_dualstack_endpoint = true\n", ""),
    ],
)
def test_env_endpoint(
    tmp_path: Path, extra: dict[str, str], config: str | None, expected: str
) -> None:
    from shipit.services.registries import env_endpoint

    config_file = tmp_path / "aws-config"
    if config is not None:
        config_file.write_text(config)
    env = {"AWS_CONFIG_FILE": str(config_file), "HOME": str(tmp_path), **extra}
    assert env_endpoint(env) == expected


def test_env_identity() -> None:
    from shipit.services.registries import RegistryOptions, env_identity

    both = {"AWS_ACCESS_KEY_ID": "AKIAEXAMPLE", "AWS_SECRET_ACCESS_KEY": "s"}
    assert env_identity(RegistryOptions(), both) == "key:AKIAEXAMPLE"
    assert env_identity(RegistryOptions(profile="ci"), both) is None
    assert env_identity(RegistryOptions(), {"AWS_ACCESS_KEY_ID": "AKIAEXAMPLE"}) is None
    assert env_identity(RegistryOptions(), {}) is None
