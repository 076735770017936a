"""Test support: real registries, moto's server and a fault-injecting proxy, all on loopback.

Every helper is a context manager that starts a process (or threads) and always stops it,
also when the body raises:

- :func:`tests.support.registry.running_registry` - Debian's ``docker-registry`` (distribution 2.8)
- :func:`tests.support.registry.running_ecr_registry` - the same, with TLS on 127.0.0.1:443 behind
  moto's ECR host name (needs ``.ci/ecr-setup``; see ``ecr_environment_ready``)
- :func:`tests.support.moto_server.running_moto_server` - moto's server (ECR, STS, ...)
- :func:`tests.support.faultproxy.fault_proxy` - an HTTP/1.1 proxy that injects faults per request
"""

from __future__ import annotations

import shutil


def missing_binaries(*names: str) -> str | None:
    """Return a skip reason naming the executables not on PATH, or None when all are there."""
    missing = [name for name in names if shutil.which(name) is None]
    if not missing:
        return None
    return f"not installed: {', '.join(missing)} (run .ci/setup as root)"


def die_with_parent(command: list[str]) -> list[str]:
    """Prefix ``command`` so the child gets SIGTERM if the test process dies (even SIGKILL).

    Uses util-linux ``setpriv --pdeathsig`` when present. The kernel ties this to the *thread*
    that starts the child: start helpers from the main thread (pytest fixtures do), not from a
    short-lived worker thread.
    """
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        return command
    return [setpriv, "--pdeathsig", "TERM", "--", *command]
