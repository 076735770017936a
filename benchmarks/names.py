"""Image names of one harness run: a random suffix per process, so two runs on one engine (CI's
quick run beside someone's full run) never build over, or clean up, each other's images."""

from __future__ import annotations

import secrets

RUN_ID = secrets.token_hex(3)

SAMPLE = f"bench-hello-{RUN_ID}"
SAMPLE_SINGLE = f"bench-hello-single-{RUN_ID}"
CI_NAME = f"bench-ci-{RUN_ID}"
CTX_NAME = f"bench-ctx-{RUN_ID}"
CTX_DOCKER = f"bench-ctx-docker-{RUN_ID}"


def build_names(case: str) -> tuple[str, str]:
    """(shipit's image, the docker CLI's image) of a BuildKit build case."""
    return f"bench-{case}-{RUN_ID}", f"bench-{case}-docker-{RUN_ID}"


BUILD_CASES = ("inner", "noop", "big", "cold")

_OWN_NAMES = frozenset(
    {SAMPLE, SAMPLE_SINGLE, CI_NAME, CTX_NAME, CTX_DOCKER}
    | {name for case in BUILD_CASES for name in build_names(case)}
)


def is_own_repository(repository: str) -> bool:
    """Repositories this run created (never ``shipit.local/*``, another run's, or anyone's)."""
    return repository.rpartition("/")[2] in _OWN_NAMES
