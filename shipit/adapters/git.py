"""What git knows about a build context: commit, remote (credentials stripped) and branch."""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit


@dataclass(frozen=True)
class GitInfo:
    """The commit a build comes from."""

    sha: str
    branch: str | None
    remote_url: str | None
    commit_time: int | None = None  # committer time of HEAD, epoch seconds

    @property
    def short_sha(self) -> str:
        return self.sha[:7]


def strip_credentials(url: str) -> str:
    """Remove any user:password (or token) from a git remote URL; scp-style URLs carry none."""
    if "://" not in url:
        return url
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))


def source_url(remote: str) -> str | None:
    """The remote as a URL for the OCI `source` label, credentials stripped; None when it is a
    local path (or file://), which means nothing outside this machine.

    scp-like `git@github.com:acme/web.git` and `ssh://git@host/acme/web.git` become
    `https://host/acme/web`, the address people browse.
    """
    remote = remote.strip()
    scp = re.fullmatch(r"(?:[^@/:\s]+@)?([A-Za-z0-9.-]+\.[A-Za-z]{2,}):(?!//)([^\s]+)", remote)
    if scp and not remote.startswith("/"):
        return f"https://{scp.group(1)}/{scp.group(2).strip('/').removesuffix('.git')}"
    if "://" not in remote:
        return None
    parts = urlsplit(remote)
    if parts.scheme in ("file", "") or not parts.hostname:
        return None
    if parts.scheme in ("ssh", "git+ssh"):
        path = parts.path.strip("/").removesuffix(".git")
        return f"https://{parts.hostname}/{path}"
    return strip_credentials(remote)


def _git(path: Path, *args: str) -> str | None:
    try:
        proc = subprocess.run(
            ["git", "-C", str(path), *args],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if proc.returncode != 0:
        return None
    return proc.stdout.strip() or None


def read_git_info(path: Path) -> GitInfo | None:
    """The HEAD commit of the work tree containing `path`, or None outside a work tree."""
    out = _git(path, "rev-parse", "HEAD", "--abbrev-ref", "HEAD")
    if out is None:
        return None
    lines = out.splitlines()
    sha = lines[0]
    branch = lines[1] if len(lines) > 1 and lines[1] != "HEAD" else None
    remote = _git(path, "config", "--get", "remote.origin.url")
    committed = _git(path, "show", "-s", "--format=%ct", "HEAD")
    return GitInfo(
        sha=sha,
        branch=branch,
        remote_url=strip_credentials(remote) if remote else None,
        commit_time=int(committed) if committed and committed.isdigit() else None,
    )
