"""Repository hygiene after a push: the lifecycle policy and the image scan gate."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from shipit.adapters.ecr.errors import _aws, _one_line
from shipit.errors import RegistryError, UsageError

if TYPE_CHECKING:
    from mypy_boto3_ecr import ECRClient


class RepositoryHygiene:
    """The lifecycle policy and scan gate of :class:`~shipit.adapters.ecr.registry.EcrRegistry`."""

    if TYPE_CHECKING:

        @property
        def _ecr(self) -> ECRClient: ...

        def account_id(self) -> str: ...

    def set_lifecycle_policy(
        self,
        repository: str,
        *,
        keep_tagged: int | None,
        expire_untagged_days: int | None,
    ) -> dict[str, Any]:
        """Put a lifecycle policy: expire untagged images after D days, keep the newest N tagged.

        The "keep N" rule uses ``tagStatus: "tagged"`` with ``tagPatternList: ["*"]`` (every
        tagged image) rather than ``"any"``: ``any`` would also count untagged layers of
        multi-arch builds against N, and ECR requires an ``any`` rule to be the last one.
        """
        rules: list[dict[str, Any]] = []
        if expire_untagged_days is not None:
            if expire_untagged_days < 1:
                raise UsageError("expire-untagged days must be at least 1")
            rules.append(
                {
                    "rulePriority": 1,
                    "description": f"expire untagged images older than {expire_untagged_days} days",
                    "selection": {
                        "tagStatus": "untagged",
                        "countType": "sinceImagePushed",
                        "countUnit": "days",
                        "countNumber": expire_untagged_days,
                    },
                    "action": {"type": "expire"},
                }
            )
        if keep_tagged is not None:
            if keep_tagged < 1:
                raise UsageError("keep-tagged must be at least 1")
            rules.append(
                {
                    "rulePriority": 2,
                    "description": f"keep the newest {keep_tagged} tagged images",
                    "selection": {
                        "tagStatus": "tagged",
                        "tagPatternList": ["*"],
                        "countType": "imageCountMoreThan",
                        "countNumber": keep_tagged,
                    },
                    "action": {"type": "expire"},
                }
            )
        if not rules:
            raise UsageError(
                "no lifecycle rule to set: pass a keep-tagged count or expire-untagged days"
            )
        policy: dict[str, Any] = {"rules": rules}
        with _aws("ecr:PutLifecyclePolicy"):
            self._ecr.put_lifecycle_policy(
                registryId=self.account_id(),
                repositoryName=repository,
                lifecyclePolicyText=json.dumps(policy),
            )
        return policy

    def scan_findings(
        self,
        repository: str,
        digest: str,
        *,
        timeout: float,
        poll: float = 5.0,
        sleep: Callable[[float], None] = time.sleep,
        now: Callable[[], float] = time.monotonic,
    ) -> dict[str, int]:
        """Wait for the image scan of ``digest`` and return its severity counts."""
        account = self.account_id()
        deadline = now() + timeout
        status = "not started"
        while True:
            with _aws("ecr:DescribeImageScanFindings"):
                try:
                    response = self._ecr.describe_image_scan_findings(
                        registryId=account,
                        repositoryName=repository,
                        imageId={"imageDigest": digest},
                    )
                except self._ecr.exceptions.ScanNotFoundException:
                    response = None
            if response is not None:
                scan_status = response.get("imageScanStatus", {})
                status = str(scan_status.get("status", "IN_PROGRESS"))
                if status in ("COMPLETE", "ACTIVE"):
                    counts = response.get("imageScanFindings", {}).get("findingSeverityCounts")
                    return {str(k): int(v) for k, v in (counts or {}).items()}
                if status not in ("IN_PROGRESS", "PENDING"):
                    description = _one_line(str(scan_status.get("description", "")))
                    raise RegistryError(
                        f"image scan of {repository}@{digest} ended with status {status}"
                        + (f": {description}" if description else "")
                        + "; check the repository's scanning configuration",
                        kind="scan_failed",
                    )
            remaining = deadline - now()
            if remaining <= 0:
                raise RegistryError(
                    f"image scan of {repository}@{digest} did not finish within {timeout:g}s "
                    f"(last status: {status}); raise the scan timeout or check the ECR console",
                    kind="timeout",
                )
            sleep(min(poll, remaining))
