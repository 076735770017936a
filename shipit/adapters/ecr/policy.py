"""The least-privilege IAM policy for pushing to one ECR repository."""

from __future__ import annotations

import re
from typing import Any

#: Every permission ``shipit push`` may use; shown in the hint of an access-denied error.
IAM_PUSH_ACTIONS: tuple[str, ...] = (
    "ecr:GetAuthorizationToken",
    "ecr:BatchCheckLayerAvailability",
    "ecr:InitiateLayerUpload",
    "ecr:UploadLayerPart",
    "ecr:CompleteLayerUpload",
    "ecr:PutImage",
    "ecr:BatchGetImage",
    "ecr:DescribeRepositories",
    "ecr:CreateRepository",
    "ecr:DescribeImages",
    "sts:GetCallerIdentity",
)


#: What each option that widens a push adds to the policy (see `push_policy`).
LIFECYCLE_ACTIONS: tuple[str, ...] = ("ecr:PutLifecyclePolicy",)
SCAN_GATE_ACTIONS: tuple[str, ...] = ("ecr:DescribeImageScanFindings",)
# ECR asks KMS for these on the caller's behalf when it creates a repository encrypted with a
# customer managed key (DescribeKey to check it, CreateGrant so ECR may use it; RetireGrant when
# the repository goes); layer encryption then runs through ECR's grant.
KMS_ACTIONS: tuple[str, ...] = ("kms:CreateGrant", "kms:DescribeKey", "kms:RetireGrant")
# What the engine's pull of a --cache-from image in ECR needs (the token comes from the login).
PULL_ACTIONS: tuple[str, ...] = (
    "ecr:BatchGetImage",
    "ecr:GetDownloadUrlForLayer",
    "ecr:BatchCheckLayerAvailability",
)
_ECR_REFERENCE = re.compile(
    r"^(?P<account>\d{12})\.dkr\.ecr(?:-fips)?\.(?P<region>[a-z0-9-]+)\.amazonaws\.com(?:\.cn)?"
    r"/(?P<repository>[^:@]+)"
)


def ecr_repository_arn(reference: str) -> str | None:
    """The repository ARN of an ECR image reference (HOST/REPO:TAG), or None for other hosts."""
    match = _ECR_REFERENCE.match(reference)
    if match is None:
        return None
    partition = "aws-cn" if ".amazonaws.com.cn/" in reference else "aws"
    return (
        f"arn:{partition}:ecr:{match['region']}:{match['account']}:repository/{match['repository']}"
    )


def push_policy(
    repository_arn_or_name: str,
    *,
    region: str = "*",
    account: str = "*",
    lifecycle: bool = False,
    scan_gate: bool = False,
    kms_key: str | None = None,
    cache_from: tuple[str, ...] = (),
) -> dict[str, Any]:
    """A least-privilege IAM policy document for what `shipit push` does with these options.

    ecr:GetAuthorizationToken (and sts:GetCallerIdentity) cannot be scoped to a resource, so
    they get ``"*"``; every other push action is limited to the repository's ARN. Options add
    their actions only when given: --lifecycle-keep/--lifecycle-untagged-days, --scan-gate,
    --kms-key (scoped to the key when it is an ARN) and --cache-from images in ECR (pull
    actions scoped to each cache repository).
    """
    if repository_arn_or_name.startswith("arn:"):
        repository_arn = repository_arn_or_name
    else:
        repository_arn = f"arn:aws:ecr:{region}:{account}:repository/{repository_arn_or_name}"
    unscoped = ("ecr:GetAuthorizationToken", "sts:GetCallerIdentity")
    push_actions = [a for a in IAM_PUSH_ACTIONS if a not in unscoped]
    push_actions += [
        *(LIFECYCLE_ACTIONS if lifecycle else ()),
        *(SCAN_GATE_ACTIONS if scan_gate else ()),
    ]
    statements: list[dict[str, Any]] = [
        {"Sid": "ShipitEcrLogin", "Effect": "Allow", "Action": list(unscoped), "Resource": "*"},
        {
            "Sid": "ShipitEcrPush",
            "Effect": "Allow",
            "Action": push_actions,
            "Resource": repository_arn,
        },
    ]
    cache_arns = sorted({arn for ref in cache_from if (arn := ecr_repository_arn(ref))})
    if cache_arns:
        statements.append(
            {
                "Sid": "ShipitEcrCachePull",
                "Effect": "Allow",
                "Action": list(PULL_ACTIONS),
                "Resource": cache_arns[0] if len(cache_arns) == 1 else cache_arns,
            }
        )
    if kms_key:
        statements.append(
            {
                "Sid": "ShipitKmsForRepository",
                "Effect": "Allow",
                "Action": list(KMS_ACTIONS),
                "Resource": kms_key if kms_key.startswith("arn:") else "*",
            }
        )
    return {"Version": "2012-10-17", "Statement": statements}
