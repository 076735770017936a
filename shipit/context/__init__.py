"""Pack a build context the way the docker CLI does, with its exact `.dockerignore` semantics.

shipit hands the engine a ready-made tar (docker-py ``APIClient.build(fileobj=...,
custom_context=True)``) instead of letting docker-py pack it, so this module is the whole of
"what gets sent". It reproduces, on purpose and quirk for quirk, what the docker CLI's classic
path does (``docker/cli`` ``ReadDockerignore`` + ``TrimBuildFilesFromExcludes`` +
``moby/go-archive`` ``TarWithOptions``, on top of ``moby/patternmatcher``):

* ``.dockerignore`` is read as ``ignorefile.ReadAll`` reads it: a UTF-8 BOM is dropped, a line
  whose *first* character is ``#`` is a comment (``  # x`` is a pattern), blank lines are skipped,
  whitespace is trimmed, a leading ``!`` marks an exception, and each pattern is run through
  ``filepath.Clean`` with one leading ``/`` removed (``/foo`` == ``foo``, ``a/../b`` == ``b``,
  ``foo/`` == ``foo``, ``../x`` stays ``../x`` and so matches nothing).
* A pattern is compiled exactly as ``patternmatcher`` compiles it: to an *exact* string, a
  *prefix* (``dir/**``), a *suffix* (``**/name``, ``**.txt``) or a Go regexp (``*`` = ``[^/]*``,
  ``?`` = ``[^/]``, ``**/`` = ``(.*/)?``, ``[...]`` passed through, ``\\x`` escapes ``x``). The Go
  regexp (RE2 syntax) is then translated to an equivalent Python regexp, class by class, so that
  ``[!a]`` means ``!`` or ``a`` (RE2) rather than "not a" (fnmatch), and ``[[:alpha:]]`` works.
* The walk decides with ``MatchesUsingParentResults`` (each pattern applies to a path or to any
  parent directory; the last matching pattern wins; ``!`` re-includes), and prunes an excluded
  directory unless the text of some ``!`` pattern starts with ``<dir>/``: Docker's own rule, which
  is a *textual* prefix test, so ``!**/keep`` or ``!*/keep`` cannot rescue a file inside an
  excluded directory, while ``docs`` + ``!docs/README.md`` keeps ``docs/README.md``. An excluded
  directory that is walked only for its exceptions gets no entry of its own in the archive.
* The Dockerfile and ``.dockerignore`` are always sent. A Dockerfile outside the context is added
  as ``.dockerfile.<20 hex>`` and that name is appended to the archived ``.dockerignore``, as the
  CLI's ``AddDockerfileToBuildContext`` does, so the engine drops it from what ``COPY .`` sees.
* Entries: regular files, directories (empty ones included), symlinks as symlinks (never
  followed), hard links as hard links; sockets, FIFOs and devices are skipped. uid/gid 0, empty
  user/group names, permission bits kept, mtime truncated to the second, ustar headers (GNU
  extensions for long or non-ASCII names, never PAX records: BuildKit reads an upload whose
  first header is not a plain one as a Dockerfile), entries in
  Go's ``WalkDir`` order (lexical by name, depth first) so the archive is deterministic.

Checked entry for entry (names, order, types, modes, mtimes, sizes, link targets, owners)
against the tar docker CLI 28.2.2 sends with DOCKER_BUILDKIT=0, on trees exercising each rule.
"""

from __future__ import annotations

import errno
import os
import re
import secrets
import stat
import tarfile
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Final

from shipit.errors import UsageError

__all__ = [
    "ContextArchive",
    "IgnoreMatcher",
    "create_context_archive",
    "parse_dockerignore",
    "read_dockerignore",
]

DOCKERIGNORE: Final = ".dockerignore"


# --------------------------------------------------------------------------------------------
# The archive handed to the engine
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ContextArchive:
    """An uncompressed tar of the build context, ready for ``APIClient.build(fileobj=...)``."""

    fileobj: IO[bytes]  # a seekable temporary file, positioned at 0
    dockerfile: str  # pass as dockerfile=: POSIX path inside the context, or the generated name
    file_count: int  # regular files archived (hard links to an earlier file count too)
    size_bytes: int  # bytes of regular-file content archived
    secret_like: list[str]  # included paths that look secret, relative POSIX, sorted
    newest_mtime: int = 0  # newest modification time (epoch seconds) of what was sent

    def close(self) -> None:
        self.fileobj.close()

    def __enter__(self) -> ContextArchive:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


# --------------------------------------------------------------------------------------------
# Reading .dockerignore (moby/patternmatcher/ignorefile.ReadAll)
# --------------------------------------------------------------------------------------------

# Go's strings.TrimSpace trims unicode.IsSpace: ASCII space, \t\n\v\f\r, U+0085, U+00A0 and the
# White_Space property. Python's str.strip() would also strip \x1c-\x1f; Go does not.
_GO_SPACE: Final = (
    "\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009"
    "\u200a\u2028\u2029\u202f\u205f\u3000"
)


def _go_clean(path: str) -> str:
    """Go's ``filepath.Clean`` on a Unix system (unlike posixpath.normpath, ``//a`` -> ``/a``)."""
    if not path:
        return "."
    rooted = path.startswith("/")
    parts: list[str] = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if parts and parts[-1] != "..":
                parts.pop()
            elif not rooted:
                parts.append("..")
            continue
        parts.append(part)
    cleaned = "/".join(parts)
    if rooted:
        return "/" + cleaned
    return cleaned or "."


def parse_dockerignore(data: bytes) -> list[str]:
    """Parse ``.dockerignore`` content into cleaned patterns (exceptions keep their ``!``)."""
    patterns: list[str] = []
    for number, raw in enumerate(data.split(b"\n")):
        if raw.endswith(b"\r"):  # bufio.ScanLines drops a trailing \r
            raw = raw[:-1]
        if number == 0 and raw.startswith(b"\xef\xbb\xbf"):
            raw = raw[3:]
        line = raw.decode("utf-8", "surrogateescape")
        if line.startswith("#"):  # a comment only when # is the very first character
            continue
        pattern = line.strip(_GO_SPACE)
        if not pattern:
            continue
        invert = pattern[0] == "!"
        if invert:
            pattern = pattern[1:].strip(_GO_SPACE)
        if pattern:
            pattern = _go_clean(pattern)  # filepath.ToSlash is the identity on Unix
            if len(pattern) > 1 and pattern[0] == "/":
                pattern = pattern[1:]
        patterns.append("!" + pattern if invert else pattern)
    return patterns


def read_dockerignore(context_dir: Path) -> list[str]:
    """The patterns of ``<context_dir>/.dockerignore``; [] when there is none."""
    path = Path(context_dir) / DOCKERIGNORE
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise UsageError(
            f"cannot read '{path}': {exc.strerror or exc}",
            hint="fix its permissions or remove it",
        ) from None
    return parse_dockerignore(data)


# --------------------------------------------------------------------------------------------
# Pattern syntax check: Go's filepath.Match(pattern, ".") error, as patternmatcher.New uses it
# --------------------------------------------------------------------------------------------


def _go_get_esc(chunk: str) -> tuple[bool, str]:
    if not chunk or chunk[0] in "-]":
        return False, chunk
    if chunk[0] == "\\":
        chunk = chunk[1:]
        if not chunk:
            return False, chunk
    chunk = chunk[1:]
    return bool(chunk), chunk


def _go_chunk_ok(chunk: str) -> bool:
    while chunk:
        head = chunk[0]
        if head == "[":
            chunk = chunk[1:]
            if chunk and chunk[0] == "^":
                chunk = chunk[1:]
            nrange = 0
            while True:
                if chunk and chunk[0] == "]" and nrange > 0:
                    chunk = chunk[1:]
                    break
                ok, chunk = _go_get_esc(chunk)
                if not ok:
                    return False
                if chunk[0] == "-":
                    ok, chunk = _go_get_esc(chunk[1:])
                    if not ok:
                        return False
                nrange += 1
        elif head == "\\":
            chunk = chunk[1:]
            if not chunk:
                return False
            chunk = chunk[1:]
        else:
            chunk = chunk[1:]
    return True


def _go_pattern_ok(pattern: str) -> bool:
    """Whether Go's filepath.Match accepts the pattern (it checks the whole pattern)."""
    rest = pattern
    while rest:
        rest = rest.lstrip("*")
        in_range = False
        i = 0
        while i < len(rest):
            char = rest[i]
            if char == "\\":
                if i + 1 < len(rest):
                    i += 1
            elif char == "[":
                in_range = True
            elif char == "]":
                in_range = False
            elif char == "*" and not in_range:
                break
            i += 1
        chunk, rest = rest[:i], rest[i:]
        if not _go_chunk_ok(chunk):
            return False
    return True


# --------------------------------------------------------------------------------------------
# Pattern compilation: patternmatcher's (*Pattern).compile, then RE2 -> Python regexp
# --------------------------------------------------------------------------------------------

_EXACT, _PREFIX, _SUFFIX, _REGEXP = range(4)
_GO_ESCAPED: Final = frozenset(".+()|{}$")


def _go_compile(pattern: str) -> tuple[int, str]:
    """(match type, Go regexp source) exactly as patternmatcher builds them for '/'."""
    regex = "^"
    kind = _EXACT
    pos, end, iteration = 0, len(pattern), 0
    while pos < end:
        char = pattern[pos]
        pos += 1
        if char == "*":
            if pos < end and pattern[pos] == "*":
                pos += 1
                if pos < end and pattern[pos] == "/":  # treat **/ as **
                    pos += 1
                if pos >= end:  # trailing **: accept everything
                    if kind == _EXACT:
                        kind = _PREFIX
                    else:
                        regex += ".*"
                        kind = _REGEXP
                else:  # any number of directories, including none
                    regex += "(.*/)?"
                    kind = _REGEXP
                if iteration == 0:
                    kind = _SUFFIX
            else:
                regex += "[^/]*"
                kind = _REGEXP
        elif char == "?":
            regex += "[^/]"
            kind = _REGEXP
        elif char in _GO_ESCAPED:
            regex += "\\" + char
        elif char == "\\":
            if pos < end:
                regex += "\\" + pattern[pos]
                pos += 1
                kind = _REGEXP
            else:
                regex += "\\"
        elif char in "[]":
            regex += char
            kind = _REGEXP
        else:
            regex += char
        iteration += 1
    if kind == _REGEXP:
        regex += "$"
    return kind, regex


class _RegexError(Exception):
    """The Go regexp would not compile (or uses an RE2 feature this translation lacks)."""


_MAX_RUNE: Final = 0x10FFFF
_Ranges = list[tuple[int, int]]


def _normalize(ranges: _Ranges) -> _Ranges:
    merged: _Ranges = []
    for lo, hi in sorted(ranges):
        if merged and lo <= merged[-1][1] + 1:
            if hi > merged[-1][1]:
                merged[-1] = (merged[-1][0], hi)
        else:
            merged.append((lo, hi))
    return merged


def _negate(ranges: _Ranges) -> _Ranges:
    out: _Ranges = []
    nxt = 0
    for lo, hi in _normalize(ranges):
        if lo > nxt:
            out.append((nxt, lo - 1))
        nxt = hi + 1
    if nxt <= _MAX_RUNE:
        out.append((nxt, _MAX_RUNE))
    return out


_DIGIT: Final[_Ranges] = [(0x30, 0x39)]
_WORD: Final[_Ranges] = [(0x30, 0x39), (0x41, 0x5A), (0x5F, 0x5F), (0x61, 0x7A)]
_PERL_SPACE: Final[_Ranges] = [(0x09, 0x0A), (0x0C, 0x0D), (0x20, 0x20)]
_PERL: Final[dict[str, _Ranges]] = {
    "d": _DIGIT,
    "D": _negate(_DIGIT),
    "s": _PERL_SPACE,
    "S": _negate(_PERL_SPACE),
    "w": _WORD,
    "W": _negate(_WORD),
}
_POSIX_BASE: Final[dict[str, _Ranges]] = {
    "alnum": [(0x30, 0x39), (0x41, 0x5A), (0x61, 0x7A)],
    "alpha": [(0x41, 0x5A), (0x61, 0x7A)],
    "ascii": [(0x00, 0x7F)],
    "blank": [(0x09, 0x09), (0x20, 0x20)],
    "cntrl": [(0x00, 0x1F), (0x7F, 0x7F)],
    "digit": [(0x30, 0x39)],
    "graph": [(0x21, 0x7E)],
    "lower": [(0x61, 0x7A)],
    "print": [(0x20, 0x7E)],
    "punct": [(0x21, 0x2F), (0x3A, 0x40), (0x5B, 0x60), (0x7B, 0x7E)],
    "space": [(0x09, 0x0D), (0x20, 0x20)],
    "upper": [(0x41, 0x5A)],
    "word": _WORD,
    "xdigit": [(0x30, 0x39), (0x41, 0x46), (0x61, 0x66)],
}
_POSIX: Final[dict[str, _Ranges]] = {
    **{f"[:{name}:]": ranges for name, ranges in _POSIX_BASE.items()},
    **{f"[:^{name}:]": _negate(ranges) for name, ranges in _POSIX_BASE.items()},
}
_OCTAL: Final = frozenset("01234567")
_C_ESCAPES: Final = {"a": 7, "f": 12, "n": 10, "r": 13, "t": 9, "v": 11}


def _hex_value(char: str) -> int:
    return int(char, 16) if char in "0123456789abcdefABCDEF" else -1


def _re2_escape(src: str, pos: int) -> tuple[int, int]:
    """RE2's parseEscape for ``src[pos] == '\\'``: (code point, next position)."""
    end = len(src)
    if pos + 1 >= end:
        raise _RegexError("trailing backslash")
    char = src[pos + 1]
    nxt = pos + 2
    if char.isascii() and not char.isalnum():  # escaped punctuation is itself
        return ord(char), nxt
    if char in _OCTAL and (char == "0" or (nxt < end and src[nxt] in _OCTAL)):
        value = int(char)
        for _ in range(2):
            if nxt < end and src[nxt] in _OCTAL:
                value = value * 8 + int(src[nxt])
                nxt += 1
            else:
                break
        return value, nxt
    if char == "x" and nxt < end:
        if src[nxt] == "{":
            nxt += 1
            value, digits = 0, 0
            while True:
                if nxt >= end:
                    raise _RegexError("invalid escape")
                char = src[nxt]
                nxt += 1
                if char == "}":
                    break
                digit = _hex_value(char)
                if digit < 0:
                    raise _RegexError("invalid escape")
                value = value * 16 + digit
                if value > _MAX_RUNE:
                    raise _RegexError("invalid escape")
                digits += 1
            if digits == 0:
                raise _RegexError("invalid escape")
            return value, nxt
        if nxt + 1 < end:
            high, low = _hex_value(src[nxt]), _hex_value(src[nxt + 1])
            if high >= 0 and low >= 0:
                return high * 16 + low, nxt + 2
        raise _RegexError("invalid escape")
    if char in _C_ESCAPES:
        return _C_ESCAPES[char], nxt
    raise _RegexError(f"invalid escape \\{char}")


def _re2_class(src: str, pos: int) -> tuple[_Ranges, int]:
    """RE2's parseClass (Perl flags) for ``src[pos] == '['``: (code point ranges, next)."""
    end = len(src)
    pos += 1
    negated = pos < end and src[pos] == "^"
    if negated:
        pos += 1
    ranges: _Ranges = []
    first = True  # a ] right after [ or [^ is a literal
    while pos >= end or src[pos] != "]" or first:
        if pos >= end:
            raise _RegexError("missing closing ]")
        first = False
        if src.startswith("[:", pos) and pos + 2 < end:
            close = src.find(":]", pos + 2)
            if close >= 0:
                name = src[pos : close + 2]
                if name not in _POSIX:
                    raise _RegexError(f"invalid character class range {name}")
                ranges.extend(_POSIX[name])
                pos = close + 2
                continue
        if src[pos] == "\\" and pos + 1 < end:
            if src[pos + 1] in "pP":
                raise _RegexError("Unicode classes (\\p, \\P) are not supported")
            if src[pos + 1] in _PERL:
                ranges.extend(_PERL[src[pos + 1]])
                pos += 2
                continue
        lo, pos = _re2_class_char(src, pos)
        hi = lo
        if pos + 1 < end and src[pos] == "-" and src[pos + 1] != "]":
            hi, pos = _re2_class_char(src, pos + 1)
            if hi < lo:
                raise _RegexError("invalid character class range")
        ranges.append((lo, hi))
    pos += 1  # the closing ]
    return (_negate(ranges) if negated else _normalize(ranges)), pos


def _re2_class_char(src: str, pos: int) -> tuple[int, int]:
    if pos >= len(src):
        raise _RegexError("missing closing ]")
    if src[pos] == "\\":
        return _re2_escape(src, pos)
    return ord(src[pos]), pos + 1


def _py_class(ranges: _Ranges) -> str:
    if not ranges:
        return "(?:(?!))"  # an empty class matches nothing
    parts = []
    for lo, hi in ranges:
        parts.append(f"\\U{lo:08x}" if lo == hi else f"\\U{lo:08x}-\\U{hi:08x}")
    return "[" + "".join(parts) + "]"


def _re2_to_python(src: str) -> str:
    """Translate the RE2 source patternmatcher builds into an equivalent Python regexp."""
    out: list[str] = []
    pos, end = 0, len(src)
    while pos < end:
        char = src[pos]
        if char == "[":
            ranges, pos = _re2_class(src, pos)
            out.append(_py_class(ranges))
            continue
        if char == "\\":
            nxt = src[pos + 1] if pos + 1 < end else ""
            if nxt in ("A", "b", "B"):
                out.append("\\" + nxt)
                pos += 2
            elif nxt == "z":
                out.append(r"\Z")
                pos += 2
            elif nxt == "C":
                raise _RegexError("invalid escape \\C")
            elif nxt == "Q":  # \Q...\E: literal text
                close = src.find(r"\E", pos + 2)
                literal = src[pos + 2 :] if close < 0 else src[pos + 2 : close]
                out.append(re.escape(literal))
                pos = end if close < 0 else close + 2
            elif nxt in ("p", "P"):
                raise _RegexError("Unicode classes (\\p, \\P) are not supported")
            elif nxt and nxt in _PERL:
                out.append(_py_class(_PERL[nxt]))
                pos += 2
            else:
                code, pos = _re2_escape(src, pos)
                out.append(re.escape(chr(code)))
            continue
        if char == "^":
            out.append(r"\A")
        elif char == "$":
            out.append(r"\Z")
        elif char in ".*?+()|":
            out.append(char)
        else:
            out.append(re.escape(char))
        pos += 1
    return "".join(out)


class _Pattern:
    """One compiled pattern: ``match(path)`` is patternmatcher's ``(*Pattern).match``."""

    __slots__ = ("error", "exclusion", "kind", "literal", "regex", "text")

    def __init__(self, text: str, exclusion: bool) -> None:
        self.text = text  # the cleaned pattern without its "!" (Go's Pattern.String())
        self.exclusion = exclusion
        self.kind, source = _go_compile(text)
        self.regex: re.Pattern[str] | None = None
        self.error: str | None = None
        self.literal = ""
        if self.kind == _EXACT:
            self.literal = text
        elif self.kind == _PREFIX:
            self.literal = text[:-2]
        elif self.kind == _SUFFIX:
            self.literal = text[2:]
        else:
            # Go compiles lazily and reports a bad regexp when the pattern is first used.
            try:
                self.regex = re.compile(_re2_to_python(source), re.ASCII)
            except (_RegexError, re.error) as exc:
                self.error = str(exc)

    def match(self, path: str) -> bool:
        kind = self.kind
        if kind == _EXACT:
            return path == self.literal
        if kind == _PREFIX:
            return path.startswith(self.literal)
        if kind == _SUFFIX:
            suffix = self.literal
            if path.endswith(suffix):
                return True
            return suffix[0] == "/" and path == suffix[1:]  # **/foo matches "foo"
        if self.regex is None:
            shown = ("!" if self.exclusion else "") + self.text
            raise UsageError(
                f"invalid .dockerignore pattern '{shown}': {self.error}",
                hint="fix the pattern in .dockerignore",
            )
        return self.regex.match(path) is not None


# --------------------------------------------------------------------------------------------
# The matcher
# --------------------------------------------------------------------------------------------

MatchInfo = tuple[bool, ...]


class IgnoreMatcher:
    """Docker's ``.dockerignore`` matcher (``patternmatcher.New`` + the archive walk's rules).

    ``patterns`` are as ``read_dockerignore`` returns them (exceptions start with ``!``); each
    is trimmed and cleaned again, as ``patternmatcher.New`` does. A bare ``!`` or a pattern Go's
    ``filepath.Match`` rejects (``[``, ``a[``, ``[]a]``, ``[x-]``, a trailing ``\\``) raises
    ``UsageError`` here; a pattern whose regexp fails only raises when it is first evaluated.
    """

    def __init__(self, patterns: Sequence[str]) -> None:
        self._patterns: list[_Pattern] = []
        for raw in patterns:
            pattern = raw.strip(_GO_SPACE)
            if not pattern:
                continue
            pattern = _go_clean(pattern)
            exclusion = pattern[0] == "!"
            if exclusion:
                if len(pattern) == 1:
                    raise UsageError(
                        "invalid .dockerignore pattern '!': illegal exclusion pattern",
                        hint="an exception needs a path after the '!'",
                    )
                pattern = pattern[1:]
            if not _go_pattern_ok(pattern):
                shown = ("!" if exclusion else "") + pattern
                raise UsageError(
                    f"invalid .dockerignore pattern '{shown}': syntax error in pattern",
                    hint="fix the pattern in .dockerignore (escape a literal [ as \\[)",
                )
            self._patterns.append(_Pattern(pattern, exclusion))
        self._exception_dirs = tuple(p.text + "/" for p in self._patterns if p.exclusion)

    @property
    def patterns(self) -> list[str]:
        """The cleaned patterns, exceptions with their ``!``."""
        return [("!" if p.exclusion else "") + p.text for p in self._patterns]

    @property
    def has_exceptions(self) -> bool:
        return bool(self._exception_dirs)

    @property
    def has_patterns(self) -> bool:
        return bool(self._patterns)

    def match_entry(self, relpath: str, parent: MatchInfo | None) -> tuple[bool, MatchInfo]:
        """``MatchesUsingParentResults``: (excluded, info to pass for this directory's entries).

        ``parent`` is the info returned for the parent directory, or None for an entry at the
        top of the context (or when the caller has no information about the parents).
        """
        matched = False
        info = [False] * len(self._patterns)
        parent_dirs: list[str] | None = None
        for index, pattern in enumerate(self._patterns):
            hit = parent[index] if parent else False
            if not hit:
                # Skip when the outcome could not change: an exclusion pattern while nothing
                # matched yet, or an inclusion pattern once something has.
                if pattern.exclusion != matched:
                    continue
                hit = pattern.match(relpath)
                if not hit and not parent:
                    if parent_dirs is None:
                        parent_dirs = _parent_dirs(relpath)
                    hit = any(pattern.match(d) for d in parent_dirs)
            info[index] = hit
            if hit:
                matched = not pattern.exclusion
        return matched, tuple(info)

    def matches(self, relpath: str) -> bool:
        """Whether Docker's archive walk excludes ``relpath`` (itself, not counting pruning).

        Evaluated the way the walk evaluates it: directory by directory from the top, each
        level reusing its parent's results (``MatchesUsingParentResults``). It differs from
        ``matches_or_parent_matches`` only when a ``!`` pattern matches a parent directory but
        was skipped there because nothing had matched that directory yet: with ``docs/*.md``
        then ``!docs``, Docker still leaves ``docs/a.md`` out, and so does this.
        """
        path = _go_clean(relpath)
        if path == ".":
            return False
        info: MatchInfo | None = None
        matched = False
        parts = path.split("/")
        for depth in range(1, len(parts) + 1):
            matched, info = self.match_entry("/".join(parts[:depth]), info)
        return matched

    def matches_or_parent_matches(self, relpath: str) -> bool:
        """``patternmatcher.MatchesOrParentMatches``: each pattern against the path and parents."""
        path = _go_clean(relpath)
        if path == ".":
            return False
        return self.match_entry(path, None)[0]

    def matches_exact(self, relpath: str) -> bool:
        """``patternmatcher.MatchesExact``: each pattern against the path only, no parents."""
        matched = False
        for pattern in self._patterns:
            if pattern.exclusion == matched and pattern.match(relpath):
                matched = not pattern.exclusion
        return matched

    def exception_may_reach(self, reldir: str) -> bool:
        """Docker's test for not pruning an excluded directory: some ``!`` pattern's text
        starts with ``<reldir>/`` (a textual prefix test, wildcards are not expanded)."""
        prefix = _go_clean(reldir) + "/"
        return any(text.startswith(prefix) for text in self._exception_dirs)

    def can_skip_dir(self, relpath: str) -> bool:
        """True when the directory is excluded and no exception could re-include anything
        below it, so the walk does not descend into it (Docker's ``filepath.SkipDir``)."""
        return self.matches(relpath) and not self.exception_may_reach(relpath)


def _parent_dirs(relpath: str) -> list[str]:
    parts = relpath.split("/")[:-1]
    return ["/".join(parts[: i + 1]) for i in range(len(parts))]


# --------------------------------------------------------------------------------------------
# Secret-looking paths
# --------------------------------------------------------------------------------------------

_SECRET_NAMES: Final = frozenset({".env", ".npmrc", ".pypirc", ".netrc"})
_KEY_PREFIXES: Final = ("id_rsa", "id_ed25519", "id_ecdsa")


def _secret_like(relpath: str, is_dir: bool) -> str | None:
    """The path to report when an archived entry looks secret, else None."""
    parts = relpath.split("/")
    if ".git" in parts[:-1] or (is_dir and parts[-1] == ".git"):
        index = parts.index(".git")
        return "/".join(parts[: index + 1]) + "/"
    if is_dir:
        return None
    name = parts[-1]
    lower = name.lower()
    if (
        name in _SECRET_NAMES
        or name.startswith(".env.")
        or lower.endswith((".pem", ".key"))
        or name.startswith(_KEY_PREFIXES)
        or ".aws" in parts[:-1]
        or (name == "config.json" and len(parts) > 1 and parts[-2] == ".docker")
    ):
        return relpath
    return None


# --------------------------------------------------------------------------------------------
# Writing the tar
# --------------------------------------------------------------------------------------------

_BLOCK: Final = 512
_FLUSH_AT: Final = 1 << 20  # batch small writes into ~1 MiB
_INLINE_MAX: Final = 1 << 16  # files up to this size are read into the batch, larger are sent
_COPY_CHUNK: Final = 1 << 20


class _TarWriter:
    """Writes tar entries straight to a file descriptor (headers from ``tarfile``): plain ustar
    headers, GNU ones where a name, link or number does not fit (never PAX: BuildKit decides
    whether an upload is a tar from its first 512 bytes, and a PAX record there makes it read
    the archive as a Dockerfile, "unknown instruction: ././@PAXHEADER"; a GNU header stays
    one block for any name of at most 100 bytes, non-ASCII ones included)."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._pending = bytearray()
        self._sendfile = hasattr(os, "sendfile")
        self.newest_mtime = 0  # of every entry written so far

    def _write_all(self, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]

    def _flush(self) -> None:
        if self._pending:
            self._write_all(self._pending)
            self._pending.clear()

    def _pad(self, size: int) -> None:
        remainder = size % _BLOCK
        if remainder:
            self._pending += bytes(_BLOCK - remainder)
        if len(self._pending) >= _FLUSH_AT:
            self._flush()

    def header(
        self, name: str, kind: bytes, mode: int, mtime: int, size: int = 0, linkname: str = ""
    ) -> None:
        """Append one header: uid/gid 0, no user or group names, GNU extensions when needed."""
        self.newest_mtime = max(self.newest_mtime, mtime)
        if kind == tarfile.DIRTYPE:
            name += "/"
        try:
            fast = _ustar_header(name, kind, mode, mtime, size, linkname)
        except UnicodeEncodeError:
            fast = None
        if fast is not None:
            self._pending += fast
            return
        info = tarfile.TarInfo(name)
        info.type = kind
        info.mode = mode
        info.mtime = mtime
        info.size = size
        info.linkname = linkname
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        self._pending += info.tobuf(tarfile.GNU_FORMAT, "utf-8", "surrogateescape")

    def data(self, payload: bytes) -> None:
        self._pending += payload
        self._pad(len(payload))

    def copy(self, src_fd: int, size: int) -> bool:
        """Append ``size`` bytes of ``src_fd``; False when the file turned out shorter."""
        if size <= _INLINE_MAX:
            chunk = os.read(src_fd, size)
            while len(chunk) < size:
                more = os.read(src_fd, size - len(chunk))
                if not more:
                    return False
                chunk += more
            self.data(chunk)
            return True
        self._flush()
        offset = 0
        while offset < size:
            sent = 0
            if self._sendfile:
                try:
                    sent = os.sendfile(self._fd, src_fd, offset, size - offset)
                except OSError as exc:
                    if exc.errno not in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
                        raise
                    self._sendfile = False
                    continue
            else:
                chunk = os.pread(src_fd, min(_COPY_CHUNK, size - offset), offset)
                self._write_all(chunk)
                sent = len(chunk)
            if sent == 0:
                return False
            offset += sent
        self._pad(size)
        return True

    def close(self) -> None:
        self._pending += bytes(2 * _BLOCK)  # end-of-archive marker
        self._flush()


_USTAR_MAX: Final = 8**11  # 11 octal digits
_USTAR_TAIL: Final = b"ustar\x0000" + bytes(64 + 16)  # magic+version, user/group names, dev


def _ustar_header(
    name: str, kind: bytes, mode: int, mtime: int, size: int, linkname: str
) -> bytes | None:
    """The header ``tarfile`` writes in PAX format for an entry that needs no PAX record
    (ASCII names of at most 100 bytes, in-range numbers), built without its generic code.
    None when a PAX record is needed; UnicodeEncodeError for a non-ASCII name."""
    raw_name = name.encode("ascii")
    raw_link = linkname.encode("ascii")
    if (
        len(raw_name) > 100
        or len(raw_link) > 100
        or not 0 <= mtime < _USTAR_MAX
        or not 0 <= size < _USTAR_MAX
    ):
        return None
    header = bytearray(
        raw_name.ljust(100, b"\0")
        + b"%07o\0" % (mode & 0o7777)
        + b"0000000\x00" * 2  # uid, gid
        + b"%011o\0" % size
        + b"%011o\0" % mtime
        + b"        "  # checksum placeholder
        + kind
        + raw_link.ljust(100, b"\0")
        + _USTAR_TAIL
        + bytes(167)  # prefix and padding
    )
    header[148:156] = b"%06o\0 " % sum(header)
    return bytes(header)


# --------------------------------------------------------------------------------------------
# Packing
# --------------------------------------------------------------------------------------------


def _mode_mtime(st: os.stat_result) -> tuple[int, int]:
    # Permission bits (with setuid/setgid/sticky); mtime truncated to the second, as Docker does.
    return stat.S_IMODE(st.st_mode), st.st_mtime_ns // 1_000_000_000


def _sort_key(entry: os.DirEntry[str]) -> bytes:
    return os.fsencode(entry.name)  # Go's os.ReadDir order: by name, bytewise


class _Packer:
    def __init__(
        self,
        root: str,
        shown_root: Path,
        matcher: IgnoreMatcher,
        forced: set[str],
        skip_root_dockerignore: bool,
        writer: _TarWriter,
    ) -> None:
        self.root = root
        self.shown_root = shown_root
        self.matcher = matcher
        self.forced = forced
        self.forced_dirs = {d for f in forced for d in _parent_dirs(f)}
        self.skip_root_dockerignore = skip_root_dockerignore
        self.writer = writer
        self.file_count = 0
        self.size_bytes = 0
        self.secrets: set[str] = set()
        self.hardlinks: dict[tuple[int, int], str] = {}

    def _shown(self, relpath: str) -> Path:
        return self.shown_root / relpath

    def _scandir(self, path: str, relpath: str) -> list[os.DirEntry[str]]:
        try:
            with os.scandir(path) as entries:
                return sorted(entries, key=_sort_key)
        except FileNotFoundError:
            return []  # removed while we walked; the CLI skips it too
        except OSError as exc:
            shown = self._shown(relpath) if relpath else self.shown_root
            raise UsageError(
                f"cannot read directory '{shown}' in the build context: {exc.strerror or exc}",
                hint="fix its permissions or add it to .dockerignore",
            ) from None

    def walk(self) -> None:
        matcher = self.matcher
        filtering = matcher.has_patterns
        stack: list[tuple[str, list[os.DirEntry[str]], int, MatchInfo | None]] = [
            ("", self._scandir(self.root, ""), 0, None)
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
            if excluded and relpath in self.forced:
                excluded = False  # the Dockerfile and .dockerignore are always sent
            if excluded:
                if not is_dir:
                    continue
                if not matcher.exception_may_reach(relpath) and relpath not in self.forced_dirs:
                    continue  # prune: nothing below can be re-included
            elif not (relpath == DOCKERIGNORE and self.skip_root_dockerignore):
                self._add(entry, relpath, is_dir)
            if is_dir:
                stack.append((relpath + "/", self._scandir(entry.path, relpath), 0, info))

    def _note_secret(self, relpath: str, is_dir: bool) -> None:
        found = _secret_like(relpath, is_dir)
        if found is not None:
            self.secrets.add(found)

    def _add(self, entry: os.DirEntry[str], relpath: str, is_dir: bool) -> None:
        try:
            if is_dir:
                st = entry.stat(follow_symlinks=False)
                self.writer.header(relpath, tarfile.DIRTYPE, *_mode_mtime(st))
            elif entry.is_symlink():
                st = entry.stat(follow_symlinks=False)
                target = os.readlink(entry.path)
                self.writer.header(relpath, tarfile.SYMTYPE, *_mode_mtime(st), linkname=target)
            elif entry.is_file(follow_symlinks=False):
                if not self._add_file(entry.path, relpath):
                    return
            else:
                return  # sockets, FIFOs, devices are not sent
        except (FileNotFoundError, NotADirectoryError):
            return  # removed while we walked
        except OSError as exc:
            raise UsageError(
                f"cannot read '{self._shown(relpath)}' in the build context: {exc.strerror or exc}",
                hint="fix its permissions or add it to .dockerignore",
            ) from None
        self._note_secret(relpath, is_dir)

    def _add_file(self, path: str, relpath: str) -> bool:
        flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
        try:
            fd = os.open(path, flags | getattr(os, "O_NONBLOCK", 0))
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                return False  # replaced by a symlink while we walked
            raise
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                return False
            if st.st_nlink > 1:
                key = (st.st_dev, st.st_ino)
                first = self.hardlinks.get(key)
                if first is not None:
                    self.writer.header(relpath, tarfile.LNKTYPE, *_mode_mtime(st), linkname=first)
                    self.file_count += 1
                    return True
                self.hardlinks[key] = relpath
            self.writer.header(relpath, tarfile.REGTYPE, *_mode_mtime(st), size=st.st_size)
            if not self.writer.copy(fd, st.st_size):
                raise UsageError(
                    f"'{self._shown(relpath)}' changed while the build context was archived",
                    hint="run the build again once nothing is writing to the context",
                )
        finally:
            os.close(fd)
        self.file_count += 1
        self.size_bytes += st.st_size
        return True


def create_context_archive(context_dir: Path, dockerfile: Path) -> ContextArchive:
    """Pack ``context_dir`` as ``docker build -f dockerfile context_dir`` would send it.

    ``dockerfile`` may be relative (to the current directory, like ``-f``) and may lie outside
    the context. Raises UsageError for a missing context or Dockerfile, a bad ``.dockerignore``
    pattern, or a file or directory that cannot be read.
    """
    context_dir = Path(context_dir)
    dockerfile = Path(dockerfile)
    if not context_dir.exists():
        raise UsageError(f"build context '{context_dir}' does not exist")
    if not context_dir.is_dir():
        raise UsageError(f"build context '{context_dir}' is not a directory")
    if not dockerfile.exists():
        raise UsageError(f"Dockerfile '{dockerfile}' not found; pass -f/--file")
    if not dockerfile.is_file():
        raise UsageError(f"Dockerfile '{dockerfile}' is not a file; pass -f/--file")

    # Like the CLI: resolve symlinks in both, then see where the Dockerfile lies.
    root = os.path.realpath(context_dir)
    real_dockerfile = os.path.realpath(os.path.abspath(dockerfile))
    relative = os.path.relpath(real_dockerfile, root)
    outside = relative == ".." or relative.startswith("../")

    matcher = IgnoreMatcher(read_dockerignore(context_dir))

    outside_content = b""
    generated = ""
    forced = {DOCKERIGNORE}
    if outside:
        try:
            outside_content = Path(real_dockerfile).read_bytes()
        except OSError as exc:
            raise UsageError(
                f"cannot read Dockerfile '{dockerfile}': {exc.strerror or exc}"
            ) from None
        generated = ".dockerfile." + secrets.token_hex(10)
    else:
        forced.add(relative)

    fileobj = tempfile.TemporaryFile()  # noqa: SIM115 - handed to the caller, closed there
    try:
        fd = fileobj.fileno()
        writer = _TarWriter(fd)
        packer = _Packer(root, context_dir, matcher, forced, outside, writer)
        packer.walk()
        newest_mtime = writer.newest_mtime
        if outside:
            # Its entry carries the time of packing (as the CLI's does); its file's own counts.
            newest_mtime = max(newest_mtime, int(os.stat(real_dockerfile).st_mtime))
            _add_outside_dockerfile(packer, writer, root, generated, outside_content)
        writer.close()
        os.lseek(fd, 0, os.SEEK_SET)
        fileobj.seek(0)
    except BaseException:
        fileobj.close()
        raise
    return ContextArchive(
        fileobj=fileobj,
        dockerfile=generated or relative,
        file_count=packer.file_count,
        size_bytes=packer.size_bytes,
        secret_like=sorted(packer.secrets),
        newest_mtime=newest_mtime,
    )


def _add_outside_dockerfile(
    packer: _Packer, writer: _TarWriter, root: str, generated: str, content: bytes
) -> None:
    """Add the Dockerfile under its generated name and list that name in ``.dockerignore``,
    as the CLI's AddDockerfileToBuildContext does, so the engine keeps it out of ``COPY .``."""
    now = int(time.time())
    ignore_path = os.path.join(root, DOCKERIGNORE)
    try:
        st = os.stat(ignore_path)
        ignore = Path(ignore_path).read_bytes()
        mode, mtime = stat.S_IMODE(st.st_mode), st.st_mtime_ns // 1_000_000_000
    except FileNotFoundError:
        ignore, mode, mtime = DOCKERIGNORE.encode(), 0o600, now
    except OSError as exc:
        raise UsageError(f"cannot read '{ignore_path}': {exc.strerror or exc}") from None
    ignore += b"\n" + generated.encode() + b"\n"
    for name, payload, entry_mode, entry_mtime in (
        (DOCKERIGNORE, ignore, mode, mtime),
        (generated, content, 0o600, now),
    ):
        writer.header(name, tarfile.REGTYPE, entry_mode, entry_mtime, size=len(payload))
        writer.data(payload)
        packer.file_count += 1
        packer.size_bytes += len(payload)
