"""The context walk: every entry the build context's tar holds, in the tar's order."""

from __future__ import annotations

import os
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import NamedTuple

from shipit.context.ignore import DOCKERIGNORE, IgnoreMatcher, MatchInfo, _parent_dirs
from shipit.errors import UsageError


def _sort_key(entry: os.DirEntry[str]) -> bytes:
    return os.fsencode(entry.name)  # Go's os.ReadDir order: by name, bytewise


class WalkEntry(NamedTuple):
    """One entry the archive holds: its directory entry, its path in the context, and its kind."""

    entry: os.DirEntry[str]
    relpath: str
    is_dir: bool


def walk_context(
    root: str,
    matcher: IgnoreMatcher,
    *,
    forced: Collection[str] = frozenset(),
    skip_root_dockerignore: bool = False,
    shown_root: Path | None = None,
) -> Iterator[WalkEntry]:
    """Yield every entry the context's tar holds, in the tar's order (Go's WalkDir order).

    `matcher` holds the `.dockerignore` rules; `forced` paths are sent even when excluded (the
    Dockerfile and `.dockerignore`); an excluded directory is pruned unless an exception can
    reach below it, and then gets no entry of its own. A directory that cannot be read raises
    UsageError naming it under `shown_root`.
    """
    shown = Path(root) if shown_root is None else shown_root
    forced_dirs = {d for f in forced for d in _parent_dirs(f)}
    filtering = matcher.has_patterns
    stack: list[tuple[str, list[os.DirEntry[str]], int, MatchInfo | None]] = [
        ("", _scandir(root, "", shown), 0, None)
    ]
    while stack:
        prefix, entries, index, parent = stack[-1]
        if index >= len(entries):
            stack.pop()
            continue
        stack[-1] = (prefix, entries, index + 1, parent)
        entry = entries[index]
        relpath = prefix + entry.name
        try:
            is_dir = entry.is_dir(follow_symlinks=False)
        except OSError:
            continue  # vanished
        info: MatchInfo | None = None
        excluded = False
        if filtering:
            excluded, info = matcher.match_entry(relpath, parent)
        if excluded and relpath in forced:
            excluded = False  # the Dockerfile and .dockerignore are always sent
        if excluded:
            if not is_dir:
                continue
            if not matcher.exception_may_reach(relpath) and relpath not in forced_dirs:
                continue  # prune: nothing below can be re-included
        elif not (relpath == DOCKERIGNORE and skip_root_dockerignore):
            yield WalkEntry(entry, relpath, is_dir)
        if is_dir:
            stack.append((relpath + "/", _scandir(entry.path, relpath, shown), 0, info))


def _scandir(path: str, relpath: str, shown_root: Path) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(path) as entries:
            return sorted(entries, key=_sort_key)
    except FileNotFoundError:
        return []  # removed while we walked; the CLI skips it too
    except OSError as exc:
        shown = shown_root / relpath if relpath else shown_root
        raise UsageError(
            f"cannot read directory '{shown}' in the build context: {exc.strerror or exc}",
            hint="fix its permissions or add it to .dockerignore",
        ) from None
