"""A stand-in for the registry HTTP API, shared by CLI tests that push."""

from __future__ import annotations

from typing import Any

from shipit.adapters.oci import Manifest
from tests.fakes import FakeAPI


class FakeRegistryClient:
    """Stands in for the registry HTTP API; tags copied through it become served digests."""

    api: FakeAPI

    def __init__(self, host: str, auth: Any, **_: Any):
        self.host, self.auth = host, auth

    def ping(self) -> None:
        pass

    def manifest(self, repository: str, reference: str) -> Manifest | None:
        if reference.startswith("sha256:"):
            return Manifest(
                reference, "application/vnd.docker.distribution.manifest.v2+json", b"{}"
            )
        return None

    def put_manifest(self, repository: str, tag: str, manifest: Manifest) -> str:
        self.api.served[f"{self.host}/{repository}:{tag}"] = manifest.digest
        return manifest.digest
