"""EcrRegistry: repositories, login tokens, tags, lifecycle policies and scans in one ECR registry."""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from shipit.errors import AuthError, RegistryError, UsageError

if TYPE_CHECKING:
    from mypy_boto3_ecr import ECRClient
    from mypy_boto3_ecr.type_defs import EncryptionConfigurationTypeDef
    from mypy_boto3_sts import STSClient
from shipit.adapters.ecr.errors import _aws
from shipit.adapters.ecr.hygiene import RepositoryHygiene
from shipit.adapters.ecr.tags import ImageTags
from shipit.adapters.ecr.tokens import EcrCredentials, TokenCache, _as_utc, _utc_now

log = logging.getLogger(__name__)

# ECR's documented repository-name pattern (2 to 256 characters).
_REPOSITORY_NAME = re.compile(r"(?:[a-z0-9]+(?:[._-][a-z0-9]+)*/)*[a-z0-9]+(?:[._-][a-z0-9]+)*")


@dataclass(frozen=True)
class RepositoryResult:
    name: str
    uri: str
    created: bool
    registry_id: str


# ACCOUNT.dkr.ecr.REGION.amazonaws.com (and the FIPS / China / dual-stack forms).
_ACCOUNT_HOST_RE = re.compile(r"^(\d{12})\.dkr[.-]ecr[.-]")


def _check_repository_name(name: str) -> None:
    if not (2 <= len(name) <= 256 and _REPOSITORY_NAME.fullmatch(name)):
        raise UsageError(
            f"invalid ECR repository name {name!r}: use 2-256 lowercase letters, digits, "
            "and . _ - / separators (e.g. 'team/app')"
        )


class EcrRegistry(ImageTags, RepositoryHygiene):
    """One ECR registry (an account in a region) seen through injected ECR and STS clients."""

    def __init__(
        self,
        ecr: ECRClient | None,
        sts: STSClient | None,
        *,
        region: str,
        registry_id: str | None = None,
        token_cache: TokenCache | None = None,
        endpoint_id: str = "",
        identity: str | None = None,
        clients: Callable[[], tuple[ECRClient, STSClient]] | None = None,
    ) -> None:
        """``endpoint_id`` defaults to the ECR client's endpoint URL; ``identity`` is a non-secret
        name for the AWS credentials (e.g. the access key id or role ARN) used in the token cache
        key; by default it is read from the client's credentials, else from STS.

        Pass ``clients`` (a factory) instead of ``ecr`` and ``sts`` to create them on first use:
        a login served from the token cache then never imports boto3.
        """
        if (ecr is None or sts is None) and clients is None:
            raise TypeError("EcrRegistry needs the ECR and STS clients or a factory for them")
        self._ecr_client = ecr
        self._sts_client = sts
        self._make_clients = clients
        self.region = region
        self._registry_id = registry_id
        self._explicit_registry_id = registry_id  # as given: part of the token-cache key
        self._cache = token_cache
        self._endpoint_id = endpoint_id
        self._identity = identity
        self._caller: dict[str, str] | None = None
        self._creds: EcrCredentials | None = None

    def _clients(self) -> tuple[ECRClient, STSClient]:
        if self._ecr_client is None or self._sts_client is None:
            assert self._make_clients is not None
            self._ecr_client, self._sts_client = self._make_clients()
        return self._ecr_client, self._sts_client

    @property
    def _ecr(self) -> ECRClient:
        return self._clients()[0]

    @property
    def _sts(self) -> STSClient:
        return self._clients()[1]

    # -- identity ---------------------------------------------------------------------------

    def _caller_identity(self) -> dict[str, str]:
        if self._caller is None:
            with _aws("sts:GetCallerIdentity"):
                response = self._sts.get_caller_identity()
            self._caller = {
                "Account": str(response.get("Account", "")),
                "Arn": str(response.get("Arn", "")),
            }
        return self._caller

    def account_id(self) -> str:
        """The registry id: as given, else the account the login token names, else STS's.

        A token for the caller's own registry names it (ACCOUNT.dkr.ecr.REGION.amazonaws.com),
        so the call `aws sts get-caller-identity` adds is needed only when it does not.
        """
        if self._registry_id:
            return self._registry_id
        if self._caller is None:
            self.credentials()
            if self._registry_id:
                return self._registry_id
        return self._sts_account()

    def _sts_account(self) -> str:
        account = self._caller_identity()["Account"]
        if not account:
            raise AuthError("STS GetCallerIdentity returned no account; check the credentials")
        self._registry_id = account
        return account

    def _learn_account(self, registry_host: str) -> None:
        match = _ACCOUNT_HOST_RE.match(registry_host)
        if match and not self._registry_id:
            self._registry_id = match.group(1)

    def caller_arn(self) -> str:
        return self._caller_identity()["Arn"]

    @property
    def registry_host(self) -> str:
        return f"{self.account_id()}.dkr.ecr.{self.region}.amazonaws.com"

    def _credential_identity(self) -> str:
        if self._identity:
            return self._identity
        # The access key id is an identifier, not a secret; reading it costs no request.
        signer = getattr(self._ecr, "_request_signer", None)
        credentials = getattr(signer, "_credentials", None)
        if credentials is not None:
            with contextlib.suppress(Exception):
                access_key = credentials.get_frozen_credentials().access_key
                if access_key:
                    self._identity = f"key:{access_key}"
                    return self._identity
        self._identity = f"arn:{self.caller_arn()}"
        return self._identity

    def _cache_key(self) -> str:
        who = hashlib.sha256(self._credential_identity().encode("utf-8")).hexdigest()[:20]
        if not self._endpoint_id:
            self._endpoint_id = str(getattr(self._ecr.meta, "endpoint_url", "") or "")
        endpoint = self._endpoint_id or "aws"
        # No STS call here: one AWS identity maps to one account, so the identity, region,
        # endpoint and explicit registry id pin the registry; a warm login makes no AWS call.
        return f"{self._explicit_registry_id or 'self'}|{self.region}|{endpoint}|{who}"

    # -- repositories -----------------------------------------------------------------------

    def _describe_repository(self, name: str, account: str) -> dict[str, Any] | None:
        with _aws("ecr:DescribeRepositories"):
            try:
                response = self._ecr.describe_repositories(
                    registryId=account, repositoryNames=[name]
                )
            except self._ecr.exceptions.RepositoryNotFoundException:
                return None
        repositories = response.get("repositories", [])
        return dict(repositories[0]) if repositories else None

    def ensure_repository(
        self,
        name: str,
        *,
        create: bool = True,
        immutable_tags: bool = False,
        kms_key: str | None = None,
        scan_on_push: bool = True,
    ) -> RepositoryResult:
        """Return the repository, creating it (scan on push, encrypted) when missing."""
        _check_repository_name(name)
        account = self.account_id()
        found = self._describe_repository(name, account)
        if found is not None:
            return self._result(found, name, account, created=False)
        if not create:
            raise RegistryError(
                f"ECR repository '{name}' does not exist in {account}/{self.region}; "
                "create it or drop --no-create-repo",
                kind="not_found",
            )
        encryption: EncryptionConfigurationTypeDef = (
            {"encryptionType": "KMS", "kmsKey": kms_key}
            if kms_key
            else {"encryptionType": "AES256"}
        )
        with _aws("ecr:CreateRepository"):
            try:
                response = self._ecr.create_repository(
                    registryId=account,
                    repositoryName=name,
                    imageScanningConfiguration={"scanOnPush": scan_on_push},
                    imageTagMutability="IMMUTABLE" if immutable_tags else "MUTABLE",
                    encryptionConfiguration=encryption,
                )
            except self._ecr.exceptions.RepositoryAlreadyExistsException:
                # Another run created it between our describe and create: reuse it.
                raced = self._describe_repository(name, account)
                return self._result(raced or {}, name, account, created=False)
        log.info("created ECR repository %s in %s/%s", name, account, self.region)
        return self._result(dict(response.get("repository", {})), name, account, created=True)

    def _result(
        self, repo: Mapping[str, Any], name: str, account: str, *, created: bool
    ) -> RepositoryResult:
        registry_id = str(repo.get("registryId") or account)
        uri = str(
            repo.get("repositoryUri") or f"{registry_id}.dkr.ecr.{self.region}.amazonaws.com/{name}"
        )
        return RepositoryResult(
            name=str(repo.get("repositoryName") or name),
            uri=uri,
            created=created,
            registry_id=registry_id,
        )

    # -- login ------------------------------------------------------------------------------

    def credentials(self, *, refresh: bool = False) -> EcrCredentials:
        """A docker login for this registry: in-memory, then the token cache, then ECR.

        ``refresh=True`` (after a 401 from an expired token) skips both caches, drops the cached
        entry, and asks ECR for a new token.
        """
        if self._creds is not None and not refresh:
            return self._creds
        key = self._cache_key() if self._cache is not None else ""
        if self._cache is not None:
            if refresh:
                self._cache.invalidate(key)
            else:
                cached = self._cache.get(key)
                if cached is not None:
                    self._creds = cached
                    self._learn_account(cached.registry)
                    return cached
        creds = self._fetch_credentials()
        self._creds = creds
        self._learn_account(creds.registry)
        if self._cache is not None:
            self._cache.put(key, creds)
        return creds

    def _fetch_credentials(self) -> EcrCredentials:
        # Without a known registry id, ECR answers for the caller's own registry (as
        # `aws ecr get-login-password` asks): no STS call first.
        account = self._registry_id
        with _aws("ecr:GetAuthorizationToken"):
            if account:
                response = self._ecr.get_authorization_token(registryIds=[account])
            else:
                response = self._ecr.get_authorization_token()
        data = response.get("authorizationData") or []
        if not data:
            raise RegistryError(
                "ECR GetAuthorizationToken returned no authorization data; retry, or check "
                f"that registry {account or 'of these credentials'} exists in {self.region}"
            )
        entry = data[0]
        try:
            decoded = base64.b64decode(entry.get("authorizationToken", ""), validate=True)
            username, sep, password = decoded.decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
            raise RegistryError(
                "ECR returned an authorization token that is not base64 'user:password'; retry"
            ) from exc
        if not (sep and username and password):
            raise RegistryError(
                "ECR returned an authorization token without 'user:password'; retry"
            )
        proxy = str(entry.get("proxyEndpoint") or "")
        host = (urlsplit(proxy).netloc if "://" in proxy else proxy).rstrip("/")
        expires = entry.get("expiresAt")
        expires_at = (
            _as_utc(expires) if isinstance(expires, datetime) else _utc_now() + timedelta(hours=12)
        )
        if not host:
            host = f"{account or self._sts_account()}.dkr.ecr.{self.region}.amazonaws.com"
        return EcrCredentials(
            registry=host,
            username=username,
            password=password,
            expires_at=expires_at,
        )

    # -- images -----------------------------------------------------------------------------

    # -- lifecycle and scanning -------------------------------------------------------------
