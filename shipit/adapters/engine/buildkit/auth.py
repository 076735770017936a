"""Registry credentials served in a session: ``moby.filesync.v1.Auth``.

When a build pulls a base image or imports cache from a registry that asks for credentials, the
engine calls ``Credentials{Host}`` and logs in with the answer itself. BuildKit first asks
``GetTokenAuthority``: docker's provider (``session/auth/authprovider``) can sign registry token
requests client-side, but with ``BUILDKIT_NO_CLIENT_TOKEN`` it answers UNAVAILABLE, and BuildKit
then falls back to ``Credentials`` (``util/resolver/authorizer.go`` accepts UNIMPLEMENTED or
UNAVAILABLE there). This provider always takes that path: it holds no signing seed, so
``FetchToken`` is never needed and answers UNIMPLEMENTED.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from shipit.adapters.engine.buildkit.wire import field_string, iter_fields

if TYPE_CHECKING:
    import grpc

log = logging.getLogger(__name__)

SERVICE = "/moby.filesync.v1.Auth/"
CREDENTIALS = SERVICE + "Credentials"
FETCH_TOKEN = SERVICE + "FetchToken"
GET_TOKEN_AUTHORITY = SERVICE + "GetTokenAuthority"
VERIFY_TOKEN_AUTHORITY = SERVICE + "VerifyTokenAuthority"

# The host BuildKit asks about for Docker Hub images; the Docker config keys it differently.
DOCKER_HUB_HOST = "registry-1.docker.io"
DOCKER_HUB_CONFIG_KEY = "https://index.docker.io/v1/"

CredentialsLookup = Callable[[str], "tuple[str, str] | None"]


def config_key(host: str) -> str:
    """The Docker config ``auths`` key for the host BuildKit names (Docker Hub differs)."""
    return DOCKER_HUB_CONFIG_KEY if host == DOCKER_HUB_HOST else host


def decode_host(request: bytes) -> str:
    """CredentialsRequest.Host / GetTokenAuthorityRequest.Host (field 1)."""
    for number, _, value in iter_fields(request):
        if number == 1 and isinstance(value, bytes):
            return value.decode("utf-8", "replace")
    return ""


def encode_credentials(username: str, secret: str) -> bytes:
    """CredentialsResponse{Username = 1, Secret = 2}."""
    return field_string(1, username) + field_string(2, secret)


class AuthProvider:
    """Answers ``Credentials`` from ``lookup(host) -> (username, secret) | None``.

    ``host`` is what the engine resolves, e.g. ``127.0.0.1:5000`` or ``registry-1.docker.io``
    (see :func:`config_key`). Return None for anonymous access; an identity token is
    ``("", token)``. An exception from ``lookup`` fails the pull with its class name only, as
    its text could hold a credential.
    """

    def __init__(self, lookup: CredentialsLookup):
        self._lookup = lookup
        # (method name, host) for every call, in order: for -v output and tests.
        self.calls: list[tuple[str, str]] = []

    @property
    def asked(self) -> list[str]:
        """The hosts the engine asked credentials for, in order."""
        return [host for method, host in self.calls if method == "Credentials"]

    def credentials(self, request: bytes, context: Any) -> bytes:
        import grpc

        host = decode_host(request)
        self.calls.append(("Credentials", host))
        try:
            found = self._lookup(host)
        except Exception as exc:
            log.debug("credentials lookup for %s failed: %s", host, type(exc).__name__)
            context.abort(
                grpc.StatusCode.UNAVAILABLE,
                f"cannot read credentials for {host} ({type(exc).__name__})",
            )
        if found is None:
            return b""  # anonymous, as docker's provider answers an unknown host
        username, secret = found
        return encode_credentials(username, secret)

    def no_token_authority(self, request: bytes, context: Any) -> bytes:
        import grpc

        self.calls.append(("TokenAuthority", decode_host(request)))
        context.abort(grpc.StatusCode.UNAVAILABLE, "client side tokens disabled")
        return b""

    def fetch_token(self, request: bytes, context: Any) -> bytes:
        import grpc

        host = ""
        for number, _, value in iter_fields(request):
            if number == 2 and isinstance(value, bytes):  # FetchTokenRequest.Host
                host = value.decode("utf-8", "replace")
        self.calls.append(("FetchToken", host))
        context.abort(
            grpc.StatusCode.UNIMPLEMENTED,
            "token fetching is left to the engine (no token authority)",
        )
        return b""

    def handlers(self) -> dict[str, grpc.RpcMethodHandler]:
        import grpc

        unary = grpc.unary_unary_rpc_method_handler
        return {
            CREDENTIALS: unary(self.credentials),
            FETCH_TOKEN: unary(self.fetch_token),
            GET_TOKEN_AUTHORITY: unary(self.no_token_authority),
            VERIFY_TOKEN_AUTHORITY: unary(self.no_token_authority),
        }
