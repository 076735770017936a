"""Builder choice and the Dockerfile facts a BuildKit build needs."""

from __future__ import annotations

import base64
import json
import threading
from pathlib import Path

import pytest

from shipit.errors import BuildError, UsageError
from shipit.services import builders
from shipit.services.builders import (
    BUILDKIT,
    LEGACY,
    base_images,
    build_node_id,
    check_platform,
    choose_builder,
    credentials_lookup,
    declared_args,
    has_credentials,
    plan_session,
    registry_host,
    requested_builder,
    session_mounts,
    session_providers,
    unused_build_args,
)

ENGINE_2010 = {"ApiVersion": "1.41", "Os": "linux", "Version": "20.10.24"}
ENGINE_OLD = {"ApiVersion": "1.38", "Os": "linux", "Version": "18.06"}


@pytest.mark.parametrize(
    ("env", "configured", "expected"),
    [
        ({}, None, None),
        ({"DOCKER_BUILDKIT": "0"}, None, LEGACY),
        ({"DOCKER_BUILDKIT": "false"}, "buildkit", LEGACY),
        ({"DOCKER_BUILDKIT": "1"}, "legacy", BUILDKIT),
        ({}, "legacy", LEGACY),
        ({}, "buildkit", BUILDKIT),
        ({"DOCKER_BUILDKIT": ""}, "legacy", LEGACY),
    ],
)
def test_docker_buildkit_wins_over_the_config_key(
    env: dict[str, str], configured: str | None, expected: str | None
) -> None:
    assert requested_builder(env, configured) == expected


def test_a_bad_switch_or_key_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="DOCKER_BUILDKIT='yes' is not a boolean"):
        requested_builder({"DOCKER_BUILDKIT": "yes"}, None)
    with pytest.raises(UsageError, match='use "buildkit" or "legacy"'):
        requested_builder({}, "kaniko")


def test_buildkit_is_the_default_where_the_engine_has_it() -> None:
    choice = choose_builder(None, ENGINE_2010)
    assert choice.kind == BUILDKIT and choice.note is None


def test_an_engine_without_buildkit_falls_back_with_one_note() -> None:
    choice = choose_builder(None, ENGINE_OLD)
    assert choice.kind == LEGACY
    assert choice.note == (
        "building with the legacy builder: the engine's API 1.38 predates BuildKit "
        "(API 1.39, Docker 18.09)"
    )


def test_legacy_when_asked_even_where_buildkit_exists() -> None:
    assert choose_builder(LEGACY, ENGINE_2010).kind == LEGACY


def test_buildkit_asked_of_an_engine_without_it_is_an_error() -> None:
    with pytest.raises(UsageError, match=r"BuildKit was requested but the engine's API 1\.38"):
        choose_builder(BUILDKIT, ENGINE_OLD)


DOCKERFILE = """\
ARG PYTHON_IMAGE=python:3.12-slim
ARG REGISTRY
FROM ${PYTHON_IMAGE} AS builder
ARG APP_VERSION \\
    EXTRA="x y"
RUN --mount=type=cache,target=/root/.cache pip install .
FROM $REGISTRY/base:1 AS runtime
FROM builder AS test
RUN --mount=type=secret,id=token,required=true cat /run/secrets/token
FROM scratch
COPY --from=runtime / /
"""


def test_declared_args_with_defaults_and_continuations() -> None:
    assert declared_args(DOCKERFILE) == {
        "PYTHON_IMAGE": "python:3.12-slim",
        "REGISTRY": None,
        "APP_VERSION": None,
        "EXTRA": "x y",
    }


def test_unused_build_args_leave_out_declared_predefined_and_ignored() -> None:
    given = ["PYTHON_IMAG", "PYTHON_IMAGE", "HTTP_PROXY", "no_proxy", "APP_REVISION", "X"]
    assert unused_build_args(given, DOCKERFILE, ignore=["APP_REVISION"]) == ["PYTHON_IMAG", "X"]


def test_base_images_substitute_args_and_skip_stages_and_scratch() -> None:
    assert base_images(DOCKERFILE, {"REGISTRY": "127.0.0.1:5000"}) == [
        "python:3.12-slim",
        "127.0.0.1:5000/base:1",
    ]
    assert base_images(DOCKERFILE, {"PYTHON_IMAGE": "shipit.local/python:3.11"})[0] == (
        "shipit.local/python:3.11"
    )


def test_session_mounts() -> None:
    assert session_mounts(DOCKERFILE) == {"secret"}
    assert session_mounts("RUN --mount=type=ssh git clone x") == {"ssh"}
    assert session_mounts("RUN --mount=type=cache,target=/x true") == set()


@pytest.mark.parametrize(
    ("reference", "host"),
    [
        ("python:3.12", "registry-1.docker.io"),
        ("library/python", "registry-1.docker.io"),
        ("localhost/x", "localhost"),
        ("127.0.0.1:5000/app:1", "127.0.0.1:5000"),
        (
            "123456789012.dkr.ecr.eu-west-1.amazonaws.com/app",
            "123456789012.dkr.ecr.eu-west-1.amazonaws.com",
        ),
    ],
)
def test_registry_host(reference: str, host: str) -> None:
    assert registry_host(reference) == host


def test_platform_check_passes_a_matching_image() -> None:
    check_platform("linux/arm64", {"Architecture": "arm64", "Os": "linux", "Variant": "v8"})
    check_platform("linux/amd64", {"Architecture": "amd64", "Os": "linux"})


def test_platform_check_refuses_a_native_image_for_another_platform() -> None:
    with pytest.raises(BuildError) as caught:
        check_platform("linux/arm64", {"Architecture": "amd64", "Os": "linux"})
    assert caught.value.exit_code == 5
    assert caught.value.message == (
        "the build produced a linux/amd64 image, not the requested linux/arm64"
    )
    assert builders.BUILDKIT in (caught.value.hint or "").lower()


def _docker_config(tmp_path: Path, config: dict[str, object]) -> dict[str, str]:
    (tmp_path / "config.json").write_text(json.dumps(config))
    return {"DOCKER_CONFIG": str(tmp_path), "HOME": str(tmp_path)}


def test_no_session_for_a_plain_build(tmp_path: Path) -> None:
    env = _docker_config(tmp_path, {"auths": {"127.0.0.1:5000": {"auth": "dTpw"}}})
    plan = plan_session(
        "FROM shipit.local/busybox:latest\nRUN true\n",
        build_args={},
        cache_from=[],
        secrets=[],
        ssh=[],
        env=env,
    )
    assert not plan.needed
    assert session_providers(plan, lambda _s: None) == []


def test_a_session_for_a_private_base_or_cache_source(tmp_path: Path) -> None:
    auth = base64.b64encode(b"user:pw").decode()
    env = _docker_config(tmp_path, {"auths": {"127.0.0.1:5000": {"auth": auth}}})
    text = "ARG BASE=127.0.0.1:5000/base:1\nFROM $BASE\n"
    plan = plan_session(text, build_args={}, cache_from=[], secrets=[], ssh=[], env=env)
    assert plan.registries == ("127.0.0.1:5000",)
    plan = plan_session(
        "FROM scratch\n",
        build_args={},
        cache_from=["127.0.0.1:5000/app:latest", "127.0.0.1:5001/app:latest"],
        secrets=[],
        ssh=[],
        env=env,
    )
    assert plan.registries == ("127.0.0.1:5000",) and plan.needed
    assert credentials_lookup(env)("127.0.0.1:5000") == ("user", "pw")
    assert credentials_lookup(env)("127.0.0.1:5001") is None


def test_a_session_for_secret_mounts_even_without_secret_options(tmp_path: Path) -> None:
    env = _docker_config(tmp_path, {})
    text = "FROM scratch\nRUN --mount=type=secret,id=x true\n"
    plan = plan_session(text, build_args={}, cache_from=[], secrets=[], ssh=[], env=env)
    assert plan.needed and plan.mounts == {"secret"}
    kinds = [type(p).__name__ for p in session_providers(plan, lambda _s: None)]
    assert kinds == ["SecretsProvider", "AuthProvider"]


def test_an_identity_token_is_served_without_a_user_name(tmp_path: Path) -> None:
    env = _docker_config(tmp_path, {"auths": {"reg.example:443": {"identitytoken": "tok"}}})
    assert credentials_lookup(env)("reg.example:443") == ("", "tok")


def test_a_credential_helper_or_ecr_host_counts_as_credentials(tmp_path: Path) -> None:
    env = _docker_config(tmp_path, {"credHelpers": {"reg.example": "pass"}})
    assert has_credentials("reg.example", env)
    assert not has_credentials("other.example", env)
    assert has_credentials("123456789012.dkr.ecr.eu-west-1.amazonaws.com", env)


class _Engine:
    def __init__(self, version: dict[str, str]):
        self._version = version

    def version(self) -> dict[str, str]:
        return self._version


def test_doctor_says_which_builder_will_be_used() -> None:
    from shipit.services.doctor import check_builder

    check = check_builder(_Engine(ENGINE_2010), {}, None)
    assert (check.name, check.ok, check.detail) == (
        "builder",
        True,
        "BuildKit (the engine supports it)",
    )
    legacy = check_builder(_Engine(ENGINE_2010), {"DOCKER_BUILDKIT": "0"}, None)
    assert legacy.detail == 'legacy builder (DOCKER_BUILDKIT=0 or builder = "legacy")'
    old = check_builder(_Engine(ENGINE_OLD), {}, None)
    assert old.ok and old.detail.startswith("legacy builder (the engine's API 1.38 predates")
    wrong = check_builder(_Engine(ENGINE_OLD), {"DOCKER_BUILDKIT": "1"}, None)
    assert wrong.ok is False and "BuildKit was requested" in wrong.detail
    assert check_builder(None, {}, None).ok is None


# ---------------------------------------------------------------- the build node id


def test_node_id_is_kept_and_reused(tmp_path: Path) -> None:
    env = {"SHIPIT_CACHE_DIR": str(tmp_path / "cache")}
    first = build_node_id(env)
    assert len(first) == 64 and build_node_id(env) == first
    assert (tmp_path / "cache" / "buildkit-node-id").read_text() == first + "\n"
    assert [p.name for p in (tmp_path / "cache").iterdir()] == ["buildkit-node-id"]
    (tmp_path / "cache" / "buildkit-node-id").write_text("not an id\n")
    replaced = build_node_id(env)
    assert replaced != first and build_node_id(env) == replaced


def test_builds_starting_together_all_get_the_first_node_id(tmp_path: Path) -> None:
    # One build per platform starts at once on a machine that has no id yet.
    for attempt in range(20):
        env = {"SHIPIT_CACHE_DIR": str(tmp_path / f"cache-{attempt}")}
        start = threading.Barrier(6)
        ids: list[str] = []

        def build(env: dict[str, str], start: threading.Barrier, ids: list[str]) -> None:
            start.wait()
            ids.append(build_node_id(env))

        threads = [threading.Thread(target=build, args=(env, start, ids)) for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(set(ids)) == 1, f"attempt {attempt}: {len(set(ids))} different ids"
        assert build_node_id(env) == ids[0]


# ---------------------------------------------------------------- the first step


def test_first_step_is_a_step_that_is_not_internal_loading() -> None:
    from shipit.adapters.engine.buildkit.trace import StepStarted

    seen: list[object] = []
    firsts: list[bool] = []
    on_event = builders._watch_first_step(seen.append, lambda: firsts.append(True))
    events = [
        StepStarted(1, "[internal] load build definition from Dockerfile"),
        StepStarted(2, "[internal] load metadata for docker.io/library/busybox:latest"),
        StepStarted(3, "importing cache manifest from demo:buildcache"),
    ]
    for event in events:
        on_event(event)
    assert firsts == [] and seen == events  # every event still reaches the view
    on_event(StepStarted(4, "[1/3] FROM docker.io/library/busybox:latest"))
    assert firsts == [True]
