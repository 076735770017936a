"""Multi-platform tags in a registry: read each platform's image, join them into one image index
(a Docker manifest list, or an OCI image index for OCI manifests), publish it, and read it back.

Everything goes through the distribution HTTP API (`RegistryClient`): the engine's image store
holds one platform per tag, so an index only ever exists in a registry.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, MutableMapping, Sequence
from dataclasses import dataclass

from shipit.adapters.oci import Manifest, RegistryClient
from shipit.errors import RegistryError
from shipit.platforms import Platform, image_platform

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
INDEX_TYPES = (DOCKER_LIST, OCI_INDEX)
MAX_CONFIG_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True)
class Entry:
    """One platform's image manifest in a repository."""

    platform: Platform
    digest: str
    size: int
    media_type: str
    config_digest: str

    def as_json(self) -> dict[str, object]:
        return {
            "platform": str(self.platform),
            "digest": self.digest,
            "size": self.size,
            "image_id": self.config_digest,
        }


def is_index(manifest: Manifest) -> bool:
    return manifest.media_type in INDEX_TYPES


def build_index(entries: Sequence[Entry]) -> Manifest:
    """The index for `entries`, in their order. Same entries, same bytes: joining is idempotent.

    A Docker manifest list when every entry is a Docker image manifest (what the engine pushes;
    `docker manifest create` makes the same), else an OCI image index.
    """
    if not entries:
        raise ValueError("an image index needs at least one entry")
    docker = all(e.media_type == DOCKER_MANIFEST for e in entries)
    media_type = DOCKER_LIST if docker else OCI_INDEX
    body = {
        "schemaVersion": 2,
        "mediaType": media_type,
        "manifests": [
            {
                "mediaType": e.media_type,
                "digest": e.digest,
                "size": e.size,
                "platform": e.platform.as_oci(),
            }
            for e in entries
        ],
    }
    raw = json.dumps(body, indent=3).encode()
    return Manifest(digest=_sha256(raw), media_type=media_type, raw=raw)


def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def index_entries(manifest: Manifest) -> list[tuple[Platform, str, int, str]]:
    """(platform, digest, size, media type) of every entry of an index as the registry served it."""
    try:
        body = json.loads(manifest.raw)
        items = body["manifests"]
        return [
            (
                image_platform(item.get("platform") or {}),
                str(item["digest"]),
                int(item.get("size", 0)),
                str(item.get("mediaType", "")),
            )
            for item in items
        ]
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise RegistryError(
            f"the registry served a malformed image index ({manifest.digest})", kind="garbage"
        ) from exc


class IndexReader:
    """Reads platform images of one repository, caching manifests and configs by digest."""

    def __init__(self, client: RegistryClient, path: str):
        self.client = client
        self.path = path
        self._configs: MutableMapping[str, Platform] = {}

    def manifest(self, reference: str) -> Manifest | None:
        return self.client.manifest(self.path, reference)

    def entry(self, reference: str, expected: Platform | None = None) -> Entry:
        """The image manifest at `reference` (a tag or digest), its platform read from its config.

        Refuses a missing reference, an index (one platform per entry) and, when `expected` is
        given, an image whose config declares another platform.
        """
        shown = f"{self.client.host}/{self.path}{'@' if ':' in reference else ':'}{reference}"
        manifest = self.manifest(reference)
        if manifest is None:
            raise RegistryError(
                f"{shown} does not exist",
                hint="push that platform's image first (shipit push --platform-only on its runner)",
                kind="not_found",
            )
        if is_index(manifest):
            raise RegistryError(
                f"{shown} is already a multi-platform index, not one platform's image",
                kind="platform_mismatch",
            )
        config = manifest.config_digest
        if not config:
            raise RegistryError(f"{shown} has no image config", kind="garbage")
        platform = self.config_platform(config)
        if expected is not None and not expected.matches(
            platform.os, platform.architecture, platform.variant
        ):
            raise RegistryError(
                f"{shown} is a {platform} image, not {expected}; refusing to list it as {expected}",
                hint="push the image built for that platform under this tag, then join again",
                kind="platform_mismatch",
            )
        return Entry(
            platform=expected or platform,
            digest=manifest.digest,
            size=len(manifest.raw),
            media_type=manifest.media_type,
            config_digest=config,
        )

    def config_platform(self, digest: str) -> Platform:
        if digest not in self._configs:
            config = self._blob_json(digest)
            self._configs[digest] = image_platform(config)
        return self._configs[digest]

    def _blob_json(self, digest: str) -> dict[str, object]:
        data = self.client.blob(self.path, digest)[: MAX_CONFIG_BYTES + 1]
        if len(data) > MAX_CONFIG_BYTES or _sha256(data) != digest:
            raise RegistryError(
                f"the registry served a config blob that does not match {digest}", kind="garbage"
            )
        try:
            body = json.loads(data)
        except ValueError as exc:
            raise RegistryError(f"config blob {digest} is not JSON", kind="garbage") from exc
        if not isinstance(body, dict):
            raise RegistryError(f"config blob {digest} is not an image config", kind="garbage")
        return body

    def platforms(self, reference: str) -> list[Entry]:
        """Every platform a tag serves: the entries of an index, or the one image it names."""
        manifest = self.manifest(reference)
        if manifest is None:
            return []
        if not is_index(manifest):
            return [self.entry(reference)]
        entries = []
        for platform, digest, size, media_type in index_entries(manifest):
            child = self.manifest(digest)
            config = child.config_digest if child is not None else None
            entries.append(Entry(platform, digest, size, media_type, config or ""))
        return entries

    def same_images(self, reference: str, wanted: Iterable[tuple[Platform, str]]) -> bool | None:
        """Whether the index at `reference` lists exactly these (platform, image id) pairs.

        None when the tag does not exist; False for a single-platform image or other images.
        """
        manifest = self.manifest(reference)
        if manifest is None:
            return None
        if not is_index(manifest):
            return False
        have = {(str(e.platform), e.config_digest) for e in self.platforms(reference)}
        return have == {(str(p), image_id) for p, image_id in wanted}


def publish_index(
    client: RegistryClient,
    path: str,
    tag: str,
    index: Manifest,
    *,
    protect: bool,
) -> str:
    """PUT `index` under `tag`; "unchanged" when the tag already is this index, else "pushed".

    With `protect` (a release tag, no --allow-overwrite) a tag holding anything else is refused.
    """
    reference = f"{client.host}/{path}:{tag}"
    existing = client.manifest(path, tag)
    if existing is not None and existing.digest == index.digest:
        return "unchanged"
    if existing is not None and protect:
        raise RegistryError(
            f"release tag {reference} already exists with a different image ({existing.digest}); "
            "refusing to overwrite it",
            hint="release a new version, or pass --allow-overwrite to replace it on purpose",
            kind="overwrite_refused",
        )
    served = client.put_manifest(path, tag, index)
    if served != index.digest:
        raise RegistryError(
            f"{reference}: the registry stored the index as {served}, expected {index.digest}",
            kind="digest_mismatch",
        )
    return "pushed"
