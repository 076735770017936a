"""`.dockerignore` exactly as the docker CLI reads and matches it (moby/patternmatcher's rules)."""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from shipit.errors import UsageError

DOCKERIGNORE: Final = ".dockerignore"


# Go's strings.TrimSpace trims unicode.IsSpace: ASCII space, \t\n\v\f\r, U+0085, U+00A0 and the
# White_Space property. Python's str.strip() would also strip \x1c-\x1f; Go does not.
_GO_SPACE: Final = (
    "\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009"
    "\u200a\u2028\u2029\u202f\u205f\u3000"
)


def go_clean(path: str) -> str:
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
            pattern = go_clean(pattern)  # filepath.ToSlash is the identity on Unix
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
    ranges = _normalize(ranges)
    # A class reaching the last code point is written as what it leaves out: `[^/]` for
    # `[\x00-.0-\U0010ffff]`, which Python compiles in microseconds instead of building a
    # charset of the whole code space (~1.5 ms a pattern).
    negated = ranges[-1][1] == _MAX_RUNE
    shown = _negate(ranges) if negated else ranges
    if negated and not shown:
        return "[\\s\\S]"
    parts = []
    for lo, hi in shown:
        parts.append(f"\\U{lo:08x}" if lo == hi else f"\\U{lo:08x}-\\U{hi:08x}")
    return ("[^" if negated else "[") + "".join(parts) + "]"


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


@functools.lru_cache(maxsize=4096)
def _compiled(text: str, exclusion: bool) -> _Pattern:
    """One pattern compiled once per process (a build reads the same .dockerignore twice:
    the context scan and the tar or file sync); a _Pattern never changes after __init__."""
    return _Pattern(text, exclusion)


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
            pattern = go_clean(pattern)
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
            self._patterns.append(_compiled(pattern, exclusion))
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
        path = go_clean(relpath)
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
        path = go_clean(relpath)
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
        prefix = go_clean(reldir) + "/"
        return any(text.startswith(prefix) for text in self._exception_dirs)

    def can_skip_dir(self, relpath: str) -> bool:
        """True when the directory is excluded and no exception could re-include anything
        below it, so the walk does not descend into it (Docker's ``filepath.SkipDir``)."""
        return self.matches(relpath) and not self.exception_may_reach(relpath)


def _parent_dirs(relpath: str) -> list[str]:
    parts = relpath.split("/")[:-1]
    return ["/".join(parts[: i + 1]) for i in range(len(parts))]
