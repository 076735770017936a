"""A fake docker-py APIClient with canned streams, for unit tests that need no engine."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from typing import Any


class FakeNotFound(Exception):
    pass


def image_id_for(tag: str) -> str:
    return "sha256:" + hashlib.sha256(tag.encode()).hexdigest()


def digest_for(reference: str) -> str:
    return "sha256:" + hashlib.sha256(("manifest:" + reference).encode()).hexdigest()


class FakeAPI:
    """Records every call; `build_chunks`/`push_chunks` decide what the streams carry."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []
        self.images: dict[str, dict[str, Any]] = {}
        self.build_chunks: list[dict[str, Any]] | None = None
        self.push_chunks: dict[str, list[dict[str, Any]]] = {}
        self.push_errors: dict[str, list[dict[str, Any]]] = {}
        self.served: dict[str, str] = {}  # reference -> digest the registry serves
        self.login_error: Exception | None = None
        self.login_passwords: list[str] = []  # kept apart from `calls` so those stay secret-free
        self.context_names: list[str] = []
        # Hooks a test (or FakeRegistries) sets: what a successful push stores and reports
        # (repository, tag, image id -> digest), and what the registry serves for a reference.
        self.on_push: Callable[[str, str, str], str] | None = None
        self.on_inspect_distribution: Callable[[str], str | None] | None = None

    # ---------------------------------------------------------------- images

    def _record(self, name: str, *args: Any, **kwargs: Any) -> None:
        self.calls.append((name, args, kwargs))

    def add_image(self, ref: str, image_id: str | None = None, size: int = 1234) -> str:
        image_id = image_id or image_id_for(ref)
        entry = self.images.setdefault(
            image_id,
            {
                "Id": image_id,
                "Size": size,
                "RepoTags": [],
                "RepoDigests": [],
                "Config": {
                    "Labels": {},
                    "User": "10001:10001",
                    "ExposedPorts": {"5000/tcp": {}},
                    "Healthcheck": {"Test": ["CMD", "true"]},
                },
            },
        )
        if ref not in entry["RepoTags"]:
            entry["RepoTags"].append(ref)
        return image_id

    def _find(self, ref: str) -> dict[str, Any] | None:
        if ref in self.images:
            return self.images[ref]
        if ":" not in ref.rsplit("/", 1)[-1]:
            ref = ref + ":latest"
        for entry in self.images.values():
            if ref in entry["RepoTags"]:
                return entry
        return None

    def inspect_image(self, ref: str) -> dict[str, Any]:
        import docker.errors

        self._record("inspect_image", ref)
        entry = self._find(ref)
        if entry is None:
            raise docker.errors.ImageNotFound(f"No such image: {ref}")
        return entry

    def tag(self, image: str, repository: str, tag: str | None = None, force: bool = False) -> bool:
        self._record("tag", image, repository, tag)
        entry = self._find(image)
        assert entry is not None, f"tag of unknown image {image}"
        ref = f"{repository}:{tag}"
        if ref not in entry["RepoTags"]:
            entry["RepoTags"].append(ref)
        return True

    # ---------------------------------------------------------------- build

    def build(self, **kwargs: Any) -> Iterator[dict[str, Any]]:
        import tarfile

        fileobj = kwargs["fileobj"]
        with tarfile.open(fileobj=fileobj, mode="r:") as tar:
            self.context_names = tar.getnames()
        self._record("build", **{k: v for k, v in kwargs.items() if k != "fileobj"})
        if self.build_chunks is not None:
            yield from self.build_chunks
            return
        image_id = image_id_for(kwargs["tag"])
        yield {"stream": "Step 1/2 : FROM base\n"}
        yield {"stream": " ---> abc\n"}
        yield {"stream": "Step 2/2 : RUN echo hi\n"}
        yield {"stream": "hi\n"}
        yield {"aux": {"ID": image_id}}
        yield {"stream": f"Successfully built {image_id[7:19]}\n"}
        self.add_image(kwargs["tag"], image_id)

    # ---------------------------------------------------------------- registries

    def push(
        self,
        repository: str,
        tag: str | None = None,
        stream: bool = False,
        decode: bool = False,
        auth_config: dict[str, str] | None = None,
    ) -> Iterator[dict[str, Any]]:
        ref = f"{repository}:{tag}"
        self._record("push", repository, tag=tag, auth_config=auth_config)
        errors = self.push_errors.get(ref)
        if errors:
            chunk = errors.pop(0)
            yield {"status": f"The push refers to repository [{repository}]"}
            yield chunk
            return
        if ref in self.push_chunks:
            yield from self.push_chunks[ref]
            return
        entry = self._find(ref)
        if entry is None:  # what the engine says for a tag it does not have
            message = f"An image does not exist locally with the tag: {repository}"
            yield {"errorDetail": {"message": message}, "error": message}
            return
        if self.on_push is not None:
            digest = self.on_push(repository, str(tag), entry["Id"])
        else:
            digest = digest_for(repository)
        yield {"status": f"The push refers to repository [{repository}]"}
        yield {"status": "Preparing", "id": "aaaaaaaaaaaa", "progressDetail": {}}
        yield {
            "status": "Pushing",
            "id": "aaaaaaaaaaaa",
            "progressDetail": {"current": 512, "total": 1024},
        }
        yield {"status": "Pushed", "id": "aaaaaaaaaaaa", "progressDetail": {}}
        yield {"status": f"{tag}: digest: {digest} size: 1234"}
        yield {"aux": {"Tag": tag, "Digest": digest, "Size": 1234}}
        self.served.setdefault(ref, digest)
        self.served[ref] = digest

    def inspect_distribution(
        self, image: str, auth_config: dict[str, str] | None = None
    ) -> dict[str, Any]:
        import docker.errors

        self._record("inspect_distribution", image, auth_config=auth_config)
        if image not in self.served and self.on_inspect_distribution is not None:
            served = self.on_inspect_distribution(image)
            if served is not None:
                return {"Descriptor": {"digest": served}}
        if image not in self.served:
            raise docker.errors.APIError(
                "500 Server Error", explanation=f"manifest unknown: {image}"
            )
        return {"Descriptor": {"digest": self.served[image]}}

    def login(self, **kwargs: Any) -> dict[str, str]:
        self._record("login", **{k: v for k, v in kwargs.items() if k != "password"})
        self.login_passwords.append(str(kwargs.get("password")))
        if self.login_error is not None:
            raise self.login_error
        return {"Status": "Login Succeeded"}

    def pull(
        self,
        repository: str,
        tag: str | None = None,
        stream: bool = False,
        decode: bool = False,
        auth_config: dict[str, str] | None = None,
    ) -> Iterator[dict[str, Any]]:
        self._record("pull", repository, tag=tag)
        yield {"errorDetail": {"message": "manifest unknown"}, "error": "manifest unknown"}

    def version(self) -> dict[str, str]:
        return {"Version": "20.10.24", "ApiVersion": "1.41"}

    def remove_image(self, ref: str, force: bool = False, noprune: bool = False) -> None:
        self._record("remove_image", ref)


# -------------------------------------------------------------------- registries

MANIFEST_V2 = "application/vnd.docker.distribution.manifest.v2+json"


def manifest_for(image_id: str) -> bytes:
    """The manifest a push of image `image_id` stores (its config digest is the image id)."""
    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": MANIFEST_V2,
            "config": {
                "mediaType": "application/vnd.docker.container.image.v1+json",
                "size": 1234,
                "digest": image_id,
            },
            "layers": [
                {
                    "mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                    "size": 512,
                    "digest": "sha256:" + "a" * 64,
                }
            ],
        }
    ).encode()


def sha256_digest(raw: bytes) -> str:
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def split_reference(reference: str) -> tuple[str, str]:
    """'host/path/name:tag' -> ('host/path/name', 'tag')."""
    repository, _, tag = reference.rpartition(":")
    if "/" in tag or not repository:
        return reference, "latest"
    return repository, tag


class FakeRegistries:
    """In-memory registries behind FakeAPI pushes and the pusher's RegistryClient.

    Install with `install(monkeypatch)`: pushes through the FakeAPI store a manifest whose
    config digest is the pushed image id; `shipit.pusher.RegistryClient` becomes
    `FakeRegistryClient`, which reads and copies those manifests; the FakeAPI's
    distribution inspect answers from them. ECR hosts are served by the moto ECR client
    given as `ecr` (pushes land there with PutImage, so shipit's own ECR tagging works).
    """

    def __init__(self, api: FakeAPI, ecr: Any = None) -> None:
        self.api = api
        self.ecr = ecr
        self.repos: dict[str, dict[str, bytes]] = {}  # "host/path" -> {tag or digest -> raw}
        self.requests: list[tuple[str, str, str, str]] = []  # (method, host, repository, ref)
        self.client_auths: list[Any] = []
        api.on_push = self.pushed
        api.on_inspect_distribution = self.served_digest

    def install(self, monkeypatch: Any) -> FakeRegistries:
        import shipit.pusher

        monkeypatch.setattr(shipit.pusher, "RegistryClient", self.client)
        return self

    # ------------------------------------------------------------ state

    @staticmethod
    def _is_ecr(repository: str) -> bool:
        return ".dkr.ecr." in repository.split("/", 1)[0]

    def seed(self, reference: str, image_id: str) -> str:
        """Put an image under a tag before the test runs; return its manifest digest."""
        repository, tag = split_reference(reference)
        return self.pushed(repository, tag, image_id)

    def pushed(self, repository: str, tag: str, image_id: str) -> str:
        raw = manifest_for(image_id)
        digest = sha256_digest(raw)
        if self._is_ecr(repository) and self.ecr is not None:
            host, _, name = repository.partition("/")
            response = self.ecr.put_image(
                registryId=host.split(".", 1)[0],
                repositoryName=name,
                imageManifest=raw.decode(),
                imageManifestMediaType=MANIFEST_V2,
                imageTag=tag,
            )
            assert response["image"]["imageId"]["imageDigest"] == digest
            return digest
        store = self.repos.setdefault(repository, {})
        store[tag] = raw
        store[digest] = raw
        return digest

    def get(self, repository: str, reference: str) -> bytes | None:
        if self._is_ecr(repository) and self.ecr is not None:
            host, _, name = repository.partition("/")
            key = "imageDigest" if reference.startswith("sha256:") else "imageTag"
            try:
                images = self.ecr.batch_get_image(
                    registryId=host.split(".", 1)[0],
                    repositoryName=name,
                    imageIds=[{key: reference}],
                )["images"]
            except self.ecr.exceptions.RepositoryNotFoundException:
                return None
            return images[0]["imageManifest"].encode() if images else None
        return self.repos.get(repository, {}).get(reference)

    def tags(self, repository: str) -> dict[str, str]:
        """tag -> digest of every tag in a (non-ECR) repository."""
        return {
            ref: sha256_digest(raw)
            for ref, raw in self.repos.get(repository, {}).items()
            if not ref.startswith("sha256:")
        }

    def served_digest(self, reference: str) -> str | None:
        raw = self.get(*split_reference(reference))
        return sha256_digest(raw) if raw is not None else None

    def client(self, host: str, auth: Any, *, timeout: float = 30.0) -> FakeRegistryClient:
        self.client_auths.append(auth)
        return FakeRegistryClient(self, host, auth)


class FakeRegistryClient:
    """Stands in for shipit.registry_api.RegistryClient (same public methods, no network)."""

    def __init__(self, registries: FakeRegistries, host: str, auth: Any) -> None:
        self.registries = registries
        self.host = host
        self.auth = auth

    def manifest(self, repository: str, reference: str) -> Any:
        from shipit.registry_api import Manifest

        self.registries.requests.append(("GET", self.host, repository, reference))
        raw = self.registries.get(f"{self.host}/{repository}", reference)
        if raw is None:
            return None
        return Manifest(digest=sha256_digest(raw), media_type=MANIFEST_V2, raw=raw)

    def put_manifest(self, repository: str, tag: str, manifest: Any) -> str:
        self.registries.requests.append(("PUT", self.host, repository, tag))
        full = f"{self.host}/{repository}"
        store = self.registries.repos.setdefault(full, {})
        store[tag] = manifest.raw
        store[manifest.digest] = manifest.raw
        return str(manifest.digest)
