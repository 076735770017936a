"""Tags of images already in an ECR repository: read a digest, point a tag at it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from shipit.adapters.ecr.errors import _aws
from shipit.errors import RegistryError

if TYPE_CHECKING:
    from mypy_boto3_ecr import ECRClient


#: Manifest media types we accept back from BatchGetImage (single-platform and multi-platform).
MANIFEST_MEDIA_TYPES: tuple[str, ...] = (
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
)


class ImageTags:
    """The tag operations of :class:`~shipit.adapters.ecr.registry.EcrRegistry`."""

    if TYPE_CHECKING:

        @property
        def _ecr(self) -> ECRClient: ...

        def account_id(self) -> str: ...

        region: str

    def image_digest(self, repository: str, tag: str) -> str | None:
        """The digest ``repository:tag`` points to, or None when there is no such image."""
        with _aws("ecr:DescribeImages"):
            try:
                response = self._ecr.describe_images(
                    registryId=self.account_id(),
                    repositoryName=repository,
                    imageIds=[{"imageTag": tag}],
                )
            except self._ecr.exceptions.ImageNotFoundException:
                return None
        details = response.get("imageDetails") or []
        digest = details[0].get("imageDigest") if details else None
        return str(digest) if digest else None

    def put_tag(self, repository: str, digest: str, tag: str) -> str:
        """Point ``tag`` at the image ``digest`` already in ``repository``, without a push."""
        account = self.account_id()
        with _aws("ecr:BatchGetImage"):
            response = self._ecr.batch_get_image(
                registryId=account,
                repositoryName=repository,
                imageIds=[{"imageDigest": digest}],
                acceptedMediaTypes=list(MANIFEST_MEDIA_TYPES),
            )
        images = response.get("images") or []
        if not images or not images[0].get("imageManifest"):
            failures = response.get("failures") or []
            reason = failures[0].get("failureCode", "ImageNotFound") if failures else "not found"
            raise RegistryError(
                f"cannot tag {repository}@{digest} as '{tag}': image {reason} in "
                f"{account}/{self.region}; push the image first",
                kind="not_found",
            )
        image = images[0]
        request: dict[str, Any] = {
            "registryId": account,
            "repositoryName": repository,
            "imageManifest": image["imageManifest"],
            "imageTag": tag,
            "imageDigest": digest,
        }
        if image.get("imageManifestMediaType"):
            request["imageManifestMediaType"] = image["imageManifestMediaType"]
        with _aws("ecr:PutImage"):
            try:
                put = self._ecr.put_image(**request)
            except self._ecr.exceptions.ImageAlreadyExistsException as exc:
                # Real ECR: this digest already carries this tag, which is success. (moto also
                # raises it when an immutable tag points elsewhere, so confirm.)
                current = self.image_digest(repository, tag)
                if current == digest:
                    return digest
                raise self._immutable(repository, tag, current) from exc
            except self._ecr.exceptions.ImageTagAlreadyExistsException as exc:
                raise self._immutable(repository, tag, None) from exc
        return str(put.get("image", {}).get("imageId", {}).get("imageDigest") or digest)

    def _immutable(self, repository: str, tag: str, current: str | None) -> RegistryError:
        where = f" (it points to {current})" if current else ""
        return RegistryError(
            f"tag '{tag}' already exists in immutable ECR repository '{repository}'{where}; "
            "the registry kept the existing image: use a new tag",
            kind="immutable_tag",
        )
