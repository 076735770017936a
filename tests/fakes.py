"""A fake docker-py APIClient with canned streams, for unit tests that need no engine."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
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
        self.context_names: list[str] = []

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
        if image not in self.served:
            raise docker.errors.APIError(
                "500 Server Error", explanation=f"manifest unknown: {image}"
            )
        return {"Descriptor": {"digest": self.served[image]}}

    def login(self, **kwargs: Any) -> dict[str, str]:
        self._record("login", **{k: v for k, v in kwargs.items() if k != "password"})
        if self.login_error is not None:
            raise self.login_error
        return {"Status": "Login Succeeded"}

    def version(self) -> dict[str, str]:
        return {"Version": "20.10.24", "ApiVersion": "1.41"}

    def remove_image(self, ref: str, force: bool = False, noprune: bool = False) -> None:
        self._record("remove_image", ref)
