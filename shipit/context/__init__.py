"""Pack a build context the way the docker CLI does, with its exact `.dockerignore` semantics.

shipit hands the engine a ready-made tar (docker-py ``APIClient.build(fileobj=...,
custom_context=True)``) instead of letting docker-py pack it, so this package is the whole of
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

from shipit.context.ignore import DOCKERIGNORE, IgnoreMatcher, parse_dockerignore, read_dockerignore
from shipit.context.tar import ContextArchive, create_context_archive
from shipit.context.walker import WalkEntry, walk_context

__all__ = [
    "DOCKERIGNORE",
    "ContextArchive",
    "IgnoreMatcher",
    "WalkEntry",
    "create_context_archive",
    "parse_dockerignore",
    "read_dockerignore",
    "walk_context",
]
