"""The least-privilege IAM policy for pushing to one ECR repository."""

from __future__ import annotations

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


def push_policy(
    repository_arn_or_name: str, *, region: str = "*", account: str = "*"
) -> dict[str, Any]:
    """A least-privilege IAM policy document for pushing to one repository.

    ecr:GetAuthorizationToken (and sts:GetCallerIdentity) cannot be scoped to a resource, so
    they get ``"*"``; every other push action is limited to the repository's ARN.
    """
    if repository_arn_or_name.startswith("arn:"):
        repository_arn = repository_arn_or_name
    else:
        repository_arn = f"arn:aws:ecr:{region}:{account}:repository/{repository_arn_or_name}"
    unscoped = ("ecr:GetAuthorizationToken", "sts:GetCallerIdentity")
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "ShipitEcrLogin",
                "Effect": "Allow",
                "Action": list(unscoped),
                "Resource": "*",
            },
            {
                "Sid": "ShipitEcrPush",
                "Effect": "Allow",
                "Action": [a for a in IAM_PUSH_ACTIONS if a not in unscoped],
                "Resource": repository_arn,
            },
        ],
    }
