"""Everything shipit does with Amazon ECR, STS and IAM, through injected boto3 clients.

This package is the only user of boto3 and botocore. They are imported inside the functions that
need them, so importing it stays cheap for commands that never talk to AWS. Every AWS failure
leaves it as a :class:`~shipit.errors.ShipitError` (see errors.py), with a one-line message that
never holds a token, password or secret key.
"""

from shipit.adapters.ecr.clients import make_clients, make_iam_client, resolve_region
from shipit.adapters.ecr.policy import IAM_PUSH_ACTIONS, push_policy
from shipit.adapters.ecr.registry import EcrRegistry, RepositoryResult
from shipit.adapters.ecr.tags import MANIFEST_MEDIA_TYPES
from shipit.adapters.ecr.tokens import EcrCredentials, TokenCache, default_token_cache_path

__all__ = [
    "IAM_PUSH_ACTIONS",
    "MANIFEST_MEDIA_TYPES",
    "EcrCredentials",
    "EcrRegistry",
    "RepositoryResult",
    "TokenCache",
    "default_token_cache_path",
    "make_clients",
    "make_iam_client",
    "push_policy",
    "resolve_region",
]
