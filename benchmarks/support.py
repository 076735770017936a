"""The harness's one door to the test support code (tests/support/): the same registries, moto
server and ports the integration tests use, imported here and nowhere else in benchmarks/."""

from __future__ import annotations

import contextlib
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.moto_server import moto_server_missing, running_moto_server
from tests.support.ports import free_port
from tests.support.registry import (
    ecr_environment_ready,
    ecr_setup,
    running_ecr_registry,
    running_registry,
)

__all__ = ["EcrStack", "ecr_missing", "ecr_stack", "free_port", "fresh_registry"]


@contextlib.contextmanager
def fresh_registry(root: Path) -> Iterator[Any]:
    """A new empty ``docker-registry`` on loopback storing under ``root``, removed afterwards."""
    try:
        with running_registry(root) as registry:
            yield registry
    finally:
        shutil.rmtree(root, ignore_errors=True)


def ecr_missing(wait_s: float, log: Any) -> str | None:
    """Why moto's ECR with its TLS registry cannot run here (None when it can); waits up to
    ``wait_s`` for 127.0.0.1:443 while another run holds it."""
    missing = moto_server_missing()
    if missing:
        return missing
    deadline = time.monotonic() + wait_s
    while True:
        reason = ecr_environment_ready()
        if reason is None or "443 is in use" not in reason or time.monotonic() > deadline:
            return reason
        log(f"waiting for {reason}")
        time.sleep(3)


@dataclass
class EcrStack:
    """moto's server and the TLS registry behind moto's ECR host name."""

    moto: Any
    registry: Any

    @property
    def host(self) -> str:
        return str(self.registry.registry)


@contextlib.contextmanager
def ecr_stack(root: Path) -> Iterator[EcrStack]:
    setup = ecr_setup()
    if setup is None:
        raise RuntimeError("no ECR setup (run .ci/ecr-setup)")
    with (
        running_moto_server() as moto,
        running_ecr_registry(root, setup.tls_dir, setup.host) as registry,
    ):
        yield EcrStack(moto, registry)
