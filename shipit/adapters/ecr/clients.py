"""The boto3 clients (ECR, STS, IAM) from the standard chain, and the region they use."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from shipit import __version__
from shipit.errors import UsageError

if TYPE_CHECKING:
    from mypy_boto3_ecr import ECRClient
    from mypy_boto3_sts import STSClient
from shipit.adapters.ecr.errors import _translate


def resolve_region(region: str | None, profile: str | None, env: Mapping[str, str]) -> str:
    """--region > AWS_REGION > AWS_DEFAULT_REGION > the profile's configured region."""
    for candidate in (region, env.get("AWS_REGION"), env.get("AWS_DEFAULT_REGION")):
        if candidate and candidate.strip():
            return candidate.strip()
    import boto3

    try:
        profile_region = boto3.Session(profile_name=profile).region_name
    except Exception as exc:
        raise _translate(exc, "resolve the AWS region") from exc
    if profile_region:
        return profile_region
    raise UsageError("no AWS region: pass --region or set AWS_REGION")


def make_clients(region: str, profile: str | None) -> tuple[ECRClient, STSClient]:
    """ECR and STS clients for ``region`` (AWS_ENDPOINT_URL / AWS_ENDPOINT_URL_ECR honoured)."""
    import boto3
    from botocore.config import Config

    config = Config(
        retries={"mode": "standard", "max_attempts": 5},
        connect_timeout=10,
        read_timeout=30,
        user_agent_extra=f"shipit/{__version__}",
    )
    try:
        session = boto3.Session(profile_name=profile, region_name=region)
        ecr = session.client("ecr", config=config)
        sts = session.client("sts", config=config)
    except Exception as exc:
        raise _translate(exc, "create the AWS clients") from exc
    return ecr, sts


def make_iam_client(profile: str | None) -> Any:
    """An IAM client from the standard boto3 chain (doctor reads the caller's policies)."""
    import boto3

    return boto3.Session(profile_name=profile).client("iam")
