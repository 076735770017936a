"""The directories file sync offers, walked as fsutil walks them, filtered by shipit's rules.

A ``DirSource`` lists a directory tree (sorted by name, bytewise, as Go's ``WalkDir``) and may
filter it with rules of its own: ``ContextDir`` applies shipit's ``.dockerignore`` rules (the
ones that decide what the context tar holds), ``SingleFileDir`` offers just the Dockerfile. On top
of that, ``Walker`` applies what the engine asks for in a request (``include-patterns``,
``exclude-patterns``, ``followpaths``) the way tonistiigi/fsutil's ``filterFS`` does: an entry is
sent when every filter keeps it, a directory is descended unless a filter can rule out everything
below it, and a directory that is not itself kept is still sent just before the first entry kept
below it (the receiver needs every parent, in order).
"""

from __future__ import annotations

import errno
import fnmatch
import os
import stat as statmod
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from shipit.adapters.engine.buildkit.fsutil_types import MODE_SOCKET, Stat, go_file_mode
from shipit.context import DOCKERIGNORE, IgnoreMatcher, read_dockerignore
from shipit.context.ignore import go_clean
from shipit.errors import UsageError

_PATTERN_CHARS: Final = "*[]?^\\"
_MAX_LINK_DEPTH: Final = 255  # symlink chains in followpaths (fsutil stops at resolved paths)

_SENT_KINDS: Final = frozenset({statmod.S_IFREG, statmod.S_IFDIR, statmod.S_IFLNK})

Decision = tuple[bool, bool, Any]  # (send this entry, descend into it, info for its children)


@dataclass(frozen=True)
class Node:
    """One directory entry: its name, where it is on disk, and its lstat."""

    name: str
    path: str
    st: os.stat_result

    @property
    def is_dir(self) -> bool:
        return statmod.S_ISDIR(self.st.st_mode)


class DirSource(ABC):
    """A directory the engine may ask for by name. Subclasses list it and may filter it."""

    reset_owner = False  # send uid/gid 0 (the docker CLI does for the context)
    xattrs = True  # send extended attributes (fsutil does)

    @abstractmethod
    def list(self, reldir: str) -> list[Node]:
        """The entries of ``reldir`` ("" for the top), sorted by name bytewise."""

    @abstractmethod
    def lookup(self, relpath: str) -> Node | None:
        """The entry at ``relpath`` without following a final symlink; None when absent."""

    def decide(self, relpath: str, is_dir: bool, parent: Any) -> Decision:
        """This source's own filter; the default offers everything."""
        return True, True, None

    def shown(self, relpath: str) -> str:
        """How an entry is named in an error message."""
        return relpath


def _sort_key(entry: os.DirEntry[str]) -> bytes:
    return os.fsencode(entry.name)


class ContextDir(DirSource):
    """The build context, offering exactly the entries shipit's context tar would hold.

    The ``.dockerignore`` rules are shipit's (``shipit.context``): the Dockerfile (when inside the
    context) and ``.dockerignore`` are always offered, as the CLI's tar holds them; the engine's
    own ``exclude-patterns`` (read from the same ``.dockerignore``) then drop them when they are
    excluded, as the legacy daemon drops them from the tar before ``COPY`` sees it. Owners are
    sent as 0, as the docker CLI sends them.
    """

    reset_owner = True

    def __init__(self, root: Path, *, dockerfile: Path | None = None, xattrs: bool = True):
        self.shown_root = Path(root)
        self.root = os.path.realpath(root)
        self.xattrs = xattrs
        self.matcher = IgnoreMatcher(read_dockerignore(Path(self.root)))
        self.forced = {DOCKERIGNORE}
        if dockerfile is not None:
            real = os.path.realpath(os.path.abspath(dockerfile))
            relative = os.path.relpath(real, self.root)
            if relative != ".." and not relative.startswith("../"):
                self.forced.add(relative)
        self.forced_dirs = {d for f in self.forced for d in _parent_dirs(f)}

    def shown(self, relpath: str) -> str:
        return str(self.shown_root / relpath)

    def list(self, reldir: str) -> list[Node]:
        path = os.path.join(self.root, reldir) if reldir else self.root
        try:
            with os.scandir(path) as entries:
                ordered = sorted(entries, key=_sort_key)
        except (FileNotFoundError, NotADirectoryError):
            return []  # removed while we walked; fsutil skips it too
        except OSError as exc:
            raise UsageError(
                f"cannot read directory '{self.shown(reldir)}' in the build context: "
                f"{exc.strerror or exc}",
                hint="fix its permissions or add it to .dockerignore",
            ) from None
        nodes = []
        for entry in ordered:
            try:
                nodes.append(Node(entry.name, entry.path, entry.stat(follow_symlinks=False)))
            except FileNotFoundError:
                continue  # vanished between the listing and the stat
        return nodes

    def lookup(self, relpath: str) -> Node | None:
        path = os.path.join(self.root, relpath)
        try:
            return Node(os.path.basename(relpath), path, os.lstat(path))
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            raise UsageError(
                f"cannot read '{self.shown(relpath)}' in the build context: {exc.strerror or exc}",
                hint="fix its permissions or add it to .dockerignore",
            ) from None

    def decide(self, relpath: str, is_dir: bool, parent: Any) -> Decision:
        matcher = self.matcher
        if not matcher.has_patterns:
            return True, True, None
        excluded, info = matcher.match_entry(relpath, parent)
        if not excluded or relpath in self.forced:
            return True, True, info
        if not is_dir:
            return False, False, info
        # Docker's rule: walk an excluded directory only for exceptions that may reach into it.
        descend = matcher.exception_may_reach(relpath) or relpath in self.forced_dirs
        return False, descend, info


class SingleFileDir(DirSource):
    """A directory holding one file under ``name``: the Dockerfile, wherever it really lies.

    The docker CLI offers the Dockerfile's whole directory and relies on the engine's
    ``followpaths``; offering only the file keeps the rest of that directory private and makes
    a symlinked Dockerfile arrive as the file it points to (as shipit's tar does).
    """

    def __init__(self, name: str, path: Path):
        self.name = name
        self.path = os.path.realpath(path)

    def shown(self, relpath: str) -> str:
        return self.path

    def _node(self) -> Node | None:
        try:
            return Node(self.name, self.path, os.stat(self.path))
        except FileNotFoundError:
            return None

    def list(self, reldir: str) -> list[Node]:
        node = self._node() if reldir == "" else None
        return [node] if node is not None else []

    def lookup(self, relpath: str) -> Node | None:
        return self._node() if relpath == self.name else None


def _parent_dirs(relpath: str) -> list[str]:
    parts = relpath.split("/")[:-1]
    return ["/".join(parts[: i + 1]) for i in range(len(parts))]


# --------------------------------------------------------------------------------------------
# The engine's filters (fsutil's filterFS)
# --------------------------------------------------------------------------------------------


def _without_trailing_glob(pattern: str) -> str:
    for suffix in ("/**", "/*"):
        if pattern.endswith(suffix):
            return pattern[: -len(suffix)]
    return pattern


class PatternFilter:
    """``include-patterns`` (an entry must match) or ``exclude-patterns`` (it must not), with
    patternmatcher's parent-aware matching and fsutil's rule for skipping a directory."""

    def __init__(self, patterns: Sequence[str], *, include: bool):
        self.include = include
        self.matcher = IgnoreMatcher(patterns)
        texts = self.matcher.patterns
        if include:
            reaching = [t for t in texts if not t.startswith("!")]
        else:
            reaching = [t[1:] for t in texts if t.startswith("!")]
        trimmed = [_without_trailing_glob(t) for t in reaching]
        self.only_prefix = not any(c in t for t in trimmed for c in _PATTERN_CHARS)
        self.prefixes = [t + "/" for t in trimmed]

    def decide(self, relpath: str, is_dir: bool, parent: Any) -> Decision:
        matched, info = self.matcher.match_entry(relpath, parent)
        if matched == self.include:
            return True, True, info
        if not is_dir or not self.only_prefix:
            return False, is_dir, info
        below = relpath + "/"
        return False, any(p.startswith(below) for p in self.prefixes), info


def _has_wildcards(name: str) -> bool:
    i = 0
    while i < len(name):
        if name[i] == "\\":
            i += 1
        elif name[i] in "*?[":
            return True
        i += 1
    return False


def _go_match(pattern: str, name: str) -> bool:
    """Go's ``filepath.Match`` for one name (``[^x]`` negates, as ``[!x]`` does in fnmatch)."""
    return fnmatch.fnmatchcase(name, pattern.replace("[^", "[!"))


class _LinkResolver:
    """fsutil's ``FollowLinks``: each path, with every symlink on the way resolved inside the
    source (absolute targets count from its top), becomes an include pattern."""

    def __init__(self, source: DirSource):
        self.source = source
        self.resolved: set[str] = set()

    def append(self, path: str, depth: int = 0) -> None:
        if depth > _MAX_LINK_DEPTH:
            return
        rest = go_clean("./" + path.lstrip("/"))
        current = ""
        while True:
            first, _, rest = rest.partition("/")
            current = first if not current or current == "." else current + "/" + first
            targets = self._targets(current, allow_wildcard=True)
            if (not rest or targets) and current in self.resolved:
                return
            if targets:
                self.resolved.add(current)
                for target in targets:
                    self.append(target + ("/" + rest if rest else ""), depth + 1)
                return
            if not rest:
                self.resolved.add(current)
                return

    def _targets(self, relpath: str, *, allow_wildcard: bool) -> list[str]:
        parent, _, base = relpath.rpartition("/")
        if allow_wildcard and _has_wildcards(base):
            out: list[str] = []
            for entry in self._listing(parent):
                if _go_match(base, entry.name):
                    name = f"{parent}/{entry.name}" if parent else entry.name
                    out += self._targets(name, allow_wildcard=False)
            return out
        node = self.source.lookup(relpath)
        if node is None or not statmod.S_ISLNK(node.st.st_mode):
            return []
        try:
            link = go_clean(os.readlink(node.path))
        except OSError:
            return []
        if link.startswith("/"):
            return [link]
        return [go_clean("/" + (parent + "/" if parent else "") + link)]

    def _listing(self, reldir: str) -> list[Node]:
        if reldir:
            node = self.source.lookup(reldir)
            if node is None or not node.is_dir:
                return []
        try:
            return self.source.list(reldir)
        except UsageError:
            return []

    def patterns(self) -> list[str] | None:
        """The include patterns; None when one of them is the whole directory."""
        out: list[str] = []
        for path in sorted(self.resolved):
            if path == ".":
                return None
            if out and path.startswith(out[-1] + "/"):
                continue
            out.append(path)
        return out


def follow_links(source: DirSource, paths: Sequence[str]) -> list[str] | None:
    """``fsutil.FollowLinks`` over a source: include patterns for ``paths``, or None (all)."""
    resolver = _LinkResolver(source)
    for path in paths:
        resolver.append(path)
    return resolver.patterns()


# --------------------------------------------------------------------------------------------
# The walk
# --------------------------------------------------------------------------------------------


@dataclass
class Walked:
    """A sent entry: its wire stat and, for a regular file, where to read it."""

    stat: Stat
    path: str


@dataclass
class _Frame:
    prefix: str
    nodes: list[Node]
    infos: tuple[Any, ...]
    index: int = 0
    node: Node | None = None  # the directory itself (None for the top)
    relpath: str = ""
    sent: bool = True


@dataclass
class Walker:
    """Walks a source under filters, building each sent entry's stat as fsutil's mkstat."""

    source: DirSource
    filters: Sequence[Any] = ()
    hardlinks: dict[tuple[int, int], str] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)  # FIFOs, sockets, devices (not in the tar)

    def __iter__(self) -> Iterator[Walked]:
        filters = [self.source, *self.filters]
        stack = [_Frame("", self.source.list(""), tuple(None for _ in filters))]
        while stack:
            frame = stack[-1]
            if frame.index >= len(frame.nodes):
                stack.pop()
                continue
            node = frame.nodes[frame.index]
            frame.index += 1
            relpath = frame.prefix + node.name
            is_dir = node.is_dir
            send, descend, infos = True, True, []
            for index, item in enumerate(filters):
                keep, down, info = item.decide(relpath, is_dir, frame.infos[index])
                send, descend = send and keep, descend and down
                infos.append(info)
                if not keep and not (is_dir and down):
                    break  # neither sent nor walked: the other filters cannot change that
            if not send and not (is_dir and descend):
                continue
            if send and statmod.S_IFMT(node.st.st_mode) not in _SENT_KINDS:
                self.skipped.append(relpath)  # the context tar leaves them out too
                continue
            if send:
                walked = self._walked(relpath, node)
                if walked is None:
                    continue  # removed while we walked: the tar skips it too
                yield from self._pending(stack)
                yield walked
            if is_dir and descend:
                nodes = self.source.list(relpath)
                stack.append(_Frame(relpath + "/", nodes, tuple(infos), 0, node, relpath, send))

    def _pending(self, stack: list[_Frame]) -> Iterator[Walked]:
        """The directories walked into but not sent yet, sent before their first entry."""
        for frame in stack:
            if not frame.sent and frame.node is not None:
                frame.sent = True
                walked = self._walked(frame.relpath, frame.node)
                if walked is not None:
                    yield walked

    def _walked(self, relpath: str, node: Node) -> Walked | None:
        try:
            return Walked(self._stat(relpath, node), node.path)
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            raise UsageError(
                f"cannot read '{self.source.shown(relpath)}' in the build context: "
                f"{exc.strerror or exc}",
                hint="fix its permissions or add it to .dockerignore",
            ) from None

    def _stat(self, relpath: str, node: Node) -> Stat:
        st = node.st
        owner = not self.source.reset_owner
        stat = Stat(
            path=relpath,
            # fsutil clears the socket bit (archive/tar cannot hold one)
            mode=go_file_mode(st.st_mode) & ~MODE_SOCKET,
            uid=st.st_uid if owner else 0,
            gid=st.st_gid if owner else 0,
            mod_time=st.st_mtime_ns,
        )
        kind = statmod.S_IFMT(st.st_mode)
        if kind != statmod.S_IFDIR:
            stat.size = st.st_size
            if kind in (statmod.S_IFBLK, statmod.S_IFCHR):
                stat.devmajor, stat.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
            elif kind == statmod.S_IFLNK:
                stat.linkname = os.readlink(node.path)
            elif kind == statmod.S_IFREG and st.st_nlink > 1:
                first = self.hardlinks.setdefault((st.st_dev, st.st_ino), relpath)
                if first != relpath:
                    stat.linkname = first  # a hard link to an entry sent before
        if self.source.xattrs:
            stat.xattrs = _xattrs(node.path)
        return stat


def _xattrs(path: str) -> dict[str, bytes]:
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError as exc:
        if exc.errno in (errno.ENOTSUP, errno.ENOENT):
            return {}
        raise
    out: dict[str, bytes] = {}
    for name in names:
        if name.startswith("com.apple."):
            continue
        try:
            out[name] = os.getxattr(path, name, follow_symlinks=False)
        except OSError:
            continue  # removed meanwhile; fsutil skips a value it cannot read too
    return out
