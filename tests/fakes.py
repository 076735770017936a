"""A fake docker-py APIClient with canned streams, for unit tests that need no engine."""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Callable, Iterator
from typing import Any

from shipit.cli.wiring import Clients
from tests.support.fake_buildkit import BuildKitFakeMixin


class FakeNotFound(Exception):
    pass


def image_id_for(tag: str) -> str:
    return "sha256:" + hashlib.sha256(tag.encode()).hexdigest()


def digest_for(reference: str) -> str:
    return "sha256:" + hashlib.sha256(("manifest:" + reference).encode()).hexdigest()


class _ImageTable(dict[str, dict[str, Any]]):
    """FakeAPI's image table (id -> inspect data) that is also docker-py's `images()`."""

    def __init__(self, api: FakeAPI) -> None:
        super().__init__()
        self.api = api

    def __call__(self, filters: dict[str, Any] | None = None, **kwargs: Any) -> list[Any]:
        return self.api.list_images(filters)


class FakeAPI(BuildKitFakeMixin):
    """Records every call; `build_chunks`/`push_chunks` decide what the streams carry.

    BuildKit builds (`POST /build?version=2`) come through the mixin's plumbing and are
    recorded as `build` calls too (see tests/support/fake_buildkit.py)."""

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
        # Containers and networks (shipit runtime), keyed by id.
        self.containers_db: dict[str, dict[str, Any]] = {}
        self.networks_db: dict[str, dict[str, Any]] = {
            "bridge-id": {
                "Id": "bridge-id",
                "Name": "bridge",
                "Driver": "bridge",
                "Labels": {},
                "Containers": {},
            }
        }
        self.health_script: list[str] = []
        self.exit_code: int | None = None
        self.log_lines: list[str] = []
        self.start_error: Exception | None = None
        self.next_host_port = 32767
        self.histories: dict[str, list[dict[str, Any]]] = {}
        # docker-py lists images with `images(filters=...)`; here `images` is also the
        # table of images, so it becomes a table that can be called like that method.
        self.images = _ImageTable(self)

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

    # ---------------------------------------------------------------- containers and networks
    # What `shipit smoke/run/prune` need. A test steers them through `health_script`
    # (successive health states a running container reports), `exit_code` (a started
    # container exits at once), `log_lines`, `start_error` and `runtime_images`.

    @staticmethod
    def _api_error(status: int, explanation: str) -> Exception:
        import docker.errors

        class _Response:
            status_code = status
            reason = explanation
            url = "http+docker://localhost/fake"

            @staticmethod
            def json() -> dict[str, str]:
                return {"message": explanation}

        return docker.errors.APIError(
            f"{status} fake", response=_Response(), explanation=explanation
        )

    @staticmethod
    def _matches(labels: dict[str, str], filters: dict[str, Any] | None) -> bool:
        wanted = (filters or {}).get("label") or []
        for item in [wanted] if isinstance(wanted, str) else wanted:
            key, sep, value = item.partition("=")
            if key not in labels or (sep and labels[key] != value):
                return False
        return True

    def _container(self, ref: str) -> dict[str, Any]:
        import docker.errors

        for entry in self.containers_db.values():
            if entry["Id"] == ref or entry["Name"] == f"/{ref}" or entry["Id"].startswith(ref):
                return entry
        raise docker.errors.NotFound(f"No such container: {ref}")

    def _network(self, ref: str) -> dict[str, Any]:
        import docker.errors

        for entry in self.networks_db.values():
            if ref in (entry["Id"], entry["Name"]):
                return entry
        raise docker.errors.NotFound(f"network {ref} not found")

    def create_network(self, name: str, **kwargs: Any) -> dict[str, str]:
        self._record("create_network", name, **kwargs)
        if any(n["Name"] == name for n in self.networks_db.values()):
            raise self._api_error(409, f"network with name {name} already exists")
        net_id = hashlib.sha256(f"net:{name}:{len(self.calls)}".encode()).hexdigest()
        self.networks_db[net_id] = {
            "Id": net_id,
            "Name": name,
            "Driver": kwargs.get("driver") or "bridge",
            "Labels": dict(kwargs.get("labels") or {}),
            "Containers": {},
        }
        return {"Id": net_id}

    def inspect_network(self, ref: str, **kwargs: Any) -> dict[str, Any]:
        self._record("inspect_network", ref)
        return self._network(ref)

    def networks(self, filters: dict[str, Any] | None = None, **kwargs: Any) -> list[Any]:
        self._record("networks", filters=filters)
        return [
            {"Id": n["Id"], "Name": n["Name"], "Labels": n["Labels"], "Containers": {}}
            for n in self.networks_db.values()
            if self._matches(n["Labels"], filters)
        ]

    def remove_network(self, ref: str) -> None:
        self._record("remove_network", ref)
        entry = self._network(ref)
        if entry["Containers"]:
            raise self._api_error(
                403, f"error while removing network: network {entry['Name']} has active endpoints"
            )
        del self.networks_db[entry["Id"]]

    def create_host_config(self, **kwargs: Any) -> dict[str, Any]:
        return dict(kwargs)

    def create_container(self, image: str, **kwargs: Any) -> dict[str, str]:
        self.calls.append(("create_container", (image,), dict(kwargs)))
        name = kwargs.get("name") or f"c{len(self.containers_db)}"
        if any(c["Name"] == f"/{name}" for c in self.containers_db.values()):
            raise self._api_error(409, f'Conflict. The container name "/{name}" is already in use')
        host_config = kwargs.get("host_config") or {}
        self._network(host_config.get("network_mode") or "bridge")
        container_id = hashlib.sha256(f"ctr:{name}:{len(self.calls)}".encode()).hexdigest()
        self.containers_db[container_id] = {
            "Id": container_id,
            "Name": f"/{name}",
            "Config": {
                "Image": image,
                "Labels": dict(kwargs.get("labels") or {}),
                "Env": [f"{k}={v}" for k, v in (kwargs.get("environment") or {}).items()],
            },
            "HostConfig": host_config,
            "State": {"Status": "created", "Running": False, "ExitCode": 0},
            "NetworkSettings": {"Ports": {}},
        }
        return {"Id": container_id}

    def start(self, container: str) -> None:
        self._record("start", container)
        if self.start_error is not None:
            raise self.start_error
        entry = self._container(container)
        ports = {}
        for port, (host_ip, host_port) in (entry["HostConfig"].get("port_bindings") or {}).items():
            self.next_host_port += 1
            ports[port] = [{"HostIp": host_ip, "HostPort": str(host_port or self.next_host_port)}]
        entry["NetworkSettings"]["Ports"] = ports
        network = self._network(entry["HostConfig"].get("network_mode") or "bridge")
        network["Containers"][entry["Id"]] = {"Name": entry["Name"].lstrip("/")}
        if self.exit_code is not None:
            entry["State"] = {"Status": "exited", "Running": False, "ExitCode": self.exit_code}
        else:
            entry["State"] = {"Status": "running", "Running": True, "ExitCode": 0}

    def inspect_container(self, ref: str) -> dict[str, Any]:
        self._record("inspect_container", ref)
        entry = self._container(ref)
        if entry["State"]["Running"] and self.health_script:
            status = (
                self.health_script.pop(0) if len(self.health_script) > 1 else self.health_script[0]
            )
            entry["State"]["Health"] = {
                "Status": status,
                "Log": [{"ExitCode": 0 if status == "healthy" else 1, "Output": f"probe {status}"}],
            }
        return entry

    def containers(
        self, all: bool = False, filters: dict[str, Any] | None = None, **kwargs: Any
    ) -> list[Any]:
        self._record("containers", all=all, filters=filters)
        return [
            {
                "Id": c["Id"],
                "Names": [c["Name"]],
                "Image": c["Config"]["Image"],
                "State": c["State"]["Status"],
                "Labels": c["Config"]["Labels"],
            }
            for c in self.containers_db.values()
            if (all or c["State"]["Running"]) and self._matches(c["Config"]["Labels"], filters)
        ]

    def logs(self, container: str, stream: bool = False, tail: Any = "all", **kwargs: Any) -> Any:
        self._record("logs", container, stream=stream, tail=tail)
        self._container(container)
        lines = self.log_lines if tail == "all" else self.log_lines[-int(tail) :]
        data = "".join(f"{line}\n" for line in lines).encode()
        if stream:
            # Split across chunk boundaries, as a real multiplexed stream may be.
            return iter([data[i : i + 7] for i in range(0, len(data), 7)])
        return data

    def remove_container(self, container: str, force: bool = False, v: bool = False) -> None:
        self._record("remove_container", container, force=force)
        entry = self._container(container)
        if entry["State"]["Running"] and not force:
            raise self._api_error(409, "You cannot remove a running container. Stop it first")
        for network in self.networks_db.values():
            network["Containers"].pop(entry["Id"], None)
        del self.containers_db[entry["Id"]]

    def add_runtime_image(
        self, image_id: str, tags: list[str], *, labels: dict[str, str], created: str
    ) -> None:
        """An image for `images()`/`inspect_image` with labels and an RFC 3339 Created."""
        self.images[image_id] = {
            "Id": image_id,
            "Size": 100_000_000,
            "Created": created,
            "RepoTags": list(tags),
            "RepoDigests": [],
            "Config": {"Labels": dict(labels), "User": "", "ExposedPorts": {}},
        }

    def list_images(self, filters: dict[str, Any] | None = None) -> list[Any]:
        from datetime import datetime

        self._record("images", filters=filters)
        listed = []
        for entry in self.images.values():
            labels = (entry.get("Config") or {}).get("Labels") or {}
            dangling = not entry["RepoTags"]
            if (filters or {}).get("dangling") is not None and filters["dangling"] != dangling:
                continue
            if not self._matches(labels, filters):
                continue
            created = entry.get("Created") or "2024-01-01T00:00:00Z"
            listed.append(
                {
                    "Id": entry["Id"],
                    "RepoTags": list(entry["RepoTags"]) or None,
                    "Created": int(datetime.fromisoformat(created[:19]).timestamp()),
                    "Size": entry.get("Size") or 0,
                    "Labels": labels,
                }
            )
        return listed

    def history(self, ref: str) -> list[dict[str, Any]]:
        self._record("history", ref)
        return self.histories.get(ref, [])


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
                    "digest": "sha256:" + hashlib.sha256(image_id.encode()).hexdigest(),
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


def active_clients() -> Clients:
    """The clients tests/conftest.py's `clients` fixture put in for this test."""
    from shipit.cli import wiring

    active = wiring.active()
    assert active is not None, "no clients in place: use the `clients` fixture"
    return active


class FakeRegistries:
    """In-memory registries behind FakeAPI pushes and the pusher's RegistryClient.

    Install with `install()`: pushes through the FakeAPI store a manifest whose
    config digest is the pushed image id; the wiring's registry HTTP client becomes
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
        # What `check_push_access` answers: a registry that said unauthorized usually means it.
        self.accepts_login = False
        api.on_push = self.pushed
        api.on_inspect_distribution = self.served_digest

    def install(self, _monkeypatch: Any = None) -> FakeRegistries:
        """Make the commands' registry HTTP client `FakeRegistryClient` (through the wiring)."""
        active_clients().registry = self.client
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
            # An engine push of what is already there is a success.
            with contextlib.suppress(self.ecr.exceptions.ImageAlreadyExistsException):
                self.ecr.put_image(
                    registryId=host.split(".", 1)[0],
                    repositoryName=name,
                    imageManifest=raw.decode(),
                    imageManifestMediaType=MANIFEST_V2,
                    imageTag=tag,
                    imageDigest=digest,
                )
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
    """Stands in for shipit.adapters.oci.RegistryClient (same public methods, no network)."""

    def __init__(self, registries: FakeRegistries, host: str, auth: Any) -> None:
        self.registries = registries
        self.host = host
        self.auth = auth

    def manifest(self, repository: str, reference: str) -> Any:
        from shipit.adapters.oci import Manifest

        self.registries.requests.append(("GET", self.host, repository, reference))
        raw = self.registries.get(f"{self.host}/{repository}", reference)
        if raw is None:
            return None
        return Manifest(digest=sha256_digest(raw), media_type=MANIFEST_V2, raw=raw)

    def ping(self) -> None:
        self.registries.requests.append(("PING", self.host, "", ""))

    def check_push_access(self, repository: str) -> None:
        from shipit.errors import AuthError

        self.registries.requests.append(("CHECK", self.host, repository, ""))
        if not self.registries.accepts_login:
            raise AuthError(f"{self.host} refused the credentials")

    def put_manifest(self, repository: str, tag: str, manifest: Any) -> str:
        self.registries.requests.append(("PUT", self.host, repository, tag))
        full = f"{self.host}/{repository}"
        store = self.registries.repos.setdefault(full, {})
        store[tag] = manifest.raw
        store[manifest.digest] = manifest.raw
        return str(manifest.digest)


# -------------------------------------------------------------------- local images and helpers


def add_built_image(
    api: FakeAPI,
    project: Any,
    *,
    version: str | None = None,
    tags: tuple[str, ...] = (),
    latest: bool | None = None,
    image_id: str | None = None,
) -> tuple[str, list[str]]:
    """What `shipit build` with these options leaves in the engine: (image id, NAME:TAG refs)."""
    from shipit.config import load_config
    from shipit.services.build import ImageOptions, select_image

    selection = select_image(
        ImageOptions(tags=tags, version=version, latest=latest),
        load_config(project),
        project,
        env={},
    )
    image_id = image_id or image_id_for(selection.references[0])
    for reference in selection.references:
        api.add_image(reference, image_id)
    return image_id, selection.references


CREDENTIAL_HELPER = """#!{python}
# A docker-credential-<name> stand-in: `get` answers from creds.json, every call is logged.
import json, pathlib, sys

here = pathlib.Path(__file__).resolve().parent
action = sys.argv[1] if len(sys.argv) > 1 else ""
payload = sys.stdin.read()
with open(here / "calls.jsonl", "a") as log:
    log.write(json.dumps({{"argv": sys.argv[1:], "stdin": payload}}) + "\\n")
creds_file = here / "creds.json"
creds = json.loads(creds_file.read_text()) if creds_file.exists() else {{}}
if action == "get":
    entry = creds.get(payload.strip())
    if entry is None:
        print("credentials not found in native keychain")
        sys.exit(1)
    print(json.dumps({{"ServerURL": payload.strip(), "Username": entry[0], "Secret": entry[1]}}))
elif action == "store":
    if (here / "fail-store").exists():
        print("the keychain is locked", file=sys.stderr)
        sys.exit(1)
    data = json.loads(payload)
    creds[data["ServerURL"]] = [data["Username"], data["Secret"]]
    creds_file.write_text(json.dumps(creds))
else:
    sys.exit(2)
"""


class CredentialHelper:
    """A fake `docker-credential-NAME` executable in its own directory (put it on PATH)."""

    def __init__(self, directory: Any, name: str = "fake") -> None:
        import os
        import sys
        from pathlib import Path

        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.program = self.dir / f"docker-credential-{name}"
        self.program.write_text(CREDENTIAL_HELPER.format(python=sys.executable))
        os.chmod(self.program, 0o755)

    def set(self, server: str, username: str, secret: str) -> None:
        creds = self.creds()
        creds[server] = [username, secret]
        (self.dir / "creds.json").write_text(json.dumps(creds))

    def creds(self) -> dict[str, list[str]]:
        path = self.dir / "creds.json"
        return json.loads(path.read_text()) if path.exists() else {}

    def calls(self) -> list[dict[str, Any]]:
        path = self.dir / "calls.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line]

    def fail_store(self) -> None:
        (self.dir / "fail-store").write_text("")


AWS_SECRET = "SHIPITsecretKEYthatMUSTneverLEAK0123456789"


def isolate_aws(monkeypatch: Any, tmp_path: Any, region: str = "us-east-1") -> None:
    """Dummy AWS credentials and region, no endpoint override, no shared config: for mock_aws."""
    for var in (
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_ECR",
        "AWS_ENDPOINT_URL_STS",
        "AWS_PROFILE",
        "AWS_DEFAULT_PROFILE",
        "AWS_SESSION_TOKEN",
        "AWS_SECURITY_TOKEN",
        "AWS_REGION",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
    ):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIASHIPITTESTKEY000")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", AWS_SECRET)
    monkeypatch.setenv("AWS_DEFAULT_REGION", region)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
