"""Docker's image reference grammar: validate names, tags and registry targets before the engine sees them."""

from __future__ import annotations

import re
from dataclasses import dataclass

from shipit.errors import UsageError

# From distribution/reference (regexp.go): path components, domain, tag.
_ALNUM = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|[-]+)"
_PATH_COMPONENT = rf"{_ALNUM}(?:{_SEPARATOR}{_ALNUM})*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_IPV6 = r"\[(?:[a-fA-F0-9:]+)\]"
_DOMAIN_NAME = rf"{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*"
_HOST = rf"(?:{_DOMAIN_NAME}|{_IPV6})"
_DOMAIN = rf"{_HOST}(?::[0-9]+)?"

PATH_RE = re.compile(rf"^{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*$")
TAG_RE = re.compile(r"^[\w][\w.-]{0,127}$", re.ASCII)
DOMAIN_RE = re.compile(rf"^{_DOMAIN}$")
DIGEST_RE = re.compile(r"^sha256:[a-f0-9]{64}$")
# A release version (`1.2.3`, `v1.2.3`, pre-release `1.2.3-rc.1`): the tag rules and CI tags share it.
SEMVER_RE = re.compile(
    r"^v?(?P<major>0|[1-9]\d*)\.(?P<minor>0|[1-9]\d*)\.(?P<patch>0|[1-9]\d*)"
    r"(?:-(?P<pre>[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?$"
)
NAME_TOTAL_LENGTH_MAX = 255


def validate_name(name: str) -> str:
    """Return `name` if it is a valid repository path (no registry host), else raise UsageError."""
    if not name or not PATH_RE.match(name):
        raise UsageError(
            f"invalid image name '{name}': use lowercase letters, digits and separators "
            "(. _ -), with / between path components, e.g. 'hello-flask' or 'team/app'"
        )
    if len(name) > NAME_TOTAL_LENGTH_MAX:
        raise UsageError(f"invalid image name '{name[:40]}...': longer than 255 characters")
    return name


def validate_tag(tag: str) -> str:
    """Return `tag` if Docker accepts it as a tag, else raise UsageError."""
    if not TAG_RE.match(tag):
        raise UsageError(
            f"invalid tag '{tag}': a tag is 1-128 characters of letters, digits, '_', '.' "
            "and '-', and cannot start with '.' or '-'"
        )
    return tag


def normalise_name(raw: str) -> str:
    """Turn a directory name into a valid repository name ('My_App!' -> 'my_app')."""
    name = raw.lower()
    name = re.sub(r"[^a-z0-9._-]+", "-", name)
    name = re.sub(r"[._-]*([._-])[._-]*", r"\1", name)  # collapse runs of separators
    name = name.strip("._-")
    return name or "app"


def sanitise_tag(raw: str) -> str:
    """Turn a branch or ref name into a valid tag ('feature/Login#2' -> 'feature-login-2')."""
    tag = re.sub(r"[^\w.-]+", "-", raw.lower(), flags=re.ASCII).strip(".-")
    return tag[:128] or "untagged"


@dataclass(frozen=True)
class RegistryTarget:
    """A registry host (with optional port) and an optional namespace path under it."""

    host: str
    path: str = ""

    def repository(self, name: str) -> str:
        """The full repository reference (without tag) for an image name."""
        parts = [self.host, self.path, name] if self.path else [self.host, name]
        return "/".join(parts)


def looks_like_host(component: str) -> bool:
    """Docker's rule: a first path component is a registry host if it has '.' or ':' or is localhost."""
    return "." in component or ":" in component or component == "localhost"


def parse_registry_target(value: str) -> RegistryTarget:
    """Parse 'localhost:5000' or 'ghcr.io/acme' into host and namespace path, or raise UsageError."""
    host, _, path = value.strip().strip("/").partition("/")
    if not host or not DOMAIN_RE.match(host) or not looks_like_host(host):
        raise UsageError(
            f"invalid registry '{value}': use 'ecr', 'dockerhub', or a registry host such as "
            "'localhost:5000' or 'ghcr.io/acme'"
        )
    if path and not PATH_RE.match(path):
        raise UsageError(
            f"invalid registry namespace '{path}' in '{value}': use lowercase path components"
        )
    return RegistryTarget(host=host, path=path)
