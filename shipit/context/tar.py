"""The context tar: what `docker build` would send, written as the docker CLI writes it."""

from __future__ import annotations

import errno
import os
import secrets
import stat
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Final

from shipit.context.ignore import DOCKERIGNORE, IgnoreMatcher, read_dockerignore
from shipit.context.walker import walk_context
from shipit.errors import UsageError


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


def _mode_mtime(st: os.stat_result) -> tuple[int, int]:
    # Permission bits (with setuid/setgid/sticky); mtime truncated to the second, as Docker does.
    return stat.S_IMODE(st.st_mode), st.st_mtime_ns // 1_000_000_000


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
        self.skip_root_dockerignore = skip_root_dockerignore
        self.writer = writer
        self.file_count = 0
        self.size_bytes = 0
        self.secrets: set[str] = set()
        self.hardlinks: dict[tuple[int, int], str] = {}

    def _shown(self, relpath: str) -> Path:
        return self.shown_root / relpath

    def walk(self) -> None:
        walk = walk_context(
            self.root,
            self.matcher,
            forced=self.forced,
            skip_root_dockerignore=self.skip_root_dockerignore,
            shown_root=self.shown_root,
        )
        for entry in walk:
            self._add(entry.entry, entry.relpath, entry.is_dir)

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
    check_inputs(context_dir, dockerfile)

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


def check_inputs(context_dir: Path, dockerfile: Path) -> None:
    """The context must be a directory and the Dockerfile a file (one clear error otherwise)."""
    if not context_dir.exists():
        raise UsageError(f"build context '{context_dir}' does not exist")
    if not context_dir.is_dir():
        raise UsageError(f"build context '{context_dir}' is not a directory")
    if not dockerfile.exists():
        raise UsageError(f"Dockerfile '{dockerfile}' not found; pass -f/--file")
    if not dockerfile.is_file():
        raise UsageError(f"Dockerfile '{dockerfile}' is not a file; pass -f/--file")


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
