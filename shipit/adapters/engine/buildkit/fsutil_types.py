"""fsutil's wire messages (Packet, Stat) and Go's os.FileMode bits, for BuildKit's file sync.

Field numbers from tonistiigi/fsutil ``types/wire.proto`` and ``types/stat.proto``; mode bits from
Go's ``io/fs`` (``os.FileMode``) and ``os/stat_linux.go`` (``fillFileStatFromSys``), which is what
``Stat.mode`` carries: the permission bits plus Go's own type and setuid/setgid/sticky flags, not
a unix ``st_mode``.
"""

from __future__ import annotations

import stat as statmod
from dataclasses import dataclass, field
from typing import Final

from shipit.adapters.engine.buildkit import wire

# Packet.PacketType
PACKET_STAT: Final = 0
PACKET_REQ: Final = 1
PACKET_DATA: Final = 2
PACKET_FIN: Final = 3
PACKET_ERR: Final = 4

PACKET_NAMES: Final = {
    PACKET_STAT: "STAT",
    PACKET_REQ: "REQ",
    PACKET_DATA: "DATA",
    PACKET_FIN: "FIN",
    PACKET_ERR: "ERR",
}

# Go's os.FileMode bits (io/fs/fs.go).
MODE_DIR: Final = 1 << 31
MODE_APPEND: Final = 1 << 30
MODE_EXCLUSIVE: Final = 1 << 29
MODE_TEMPORARY: Final = 1 << 28
MODE_SYMLINK: Final = 1 << 27
MODE_DEVICE: Final = 1 << 26
MODE_NAMED_PIPE: Final = 1 << 25
MODE_SOCKET: Final = 1 << 24
MODE_SETUID: Final = 1 << 23
MODE_SETGID: Final = 1 << 22
MODE_CHAR_DEVICE: Final = 1 << 21
MODE_STICKY: Final = 1 << 20
MODE_IRREGULAR: Final = 1 << 19
MODE_PERM: Final = 0o777
# ModeType: the bits that make an entry something other than a regular file.
MODE_TYPE: Final = (
    MODE_DIR
    | MODE_SYMLINK
    | MODE_NAMED_PIPE
    | MODE_SOCKET
    | MODE_DEVICE
    | MODE_CHAR_DEVICE
    | MODE_IRREGULAR
)

_TYPE_BITS: Final = {
    statmod.S_IFDIR: MODE_DIR,
    statmod.S_IFLNK: MODE_SYMLINK,
    statmod.S_IFIFO: MODE_NAMED_PIPE,
    statmod.S_IFSOCK: MODE_SOCKET,
    statmod.S_IFBLK: MODE_DEVICE,
    statmod.S_IFCHR: MODE_DEVICE | MODE_CHAR_DEVICE,
    statmod.S_IFREG: 0,
}


def go_file_mode(st_mode: int) -> int:
    """Go's ``FileInfo.Mode()`` for a unix ``st_mode`` (``fillFileStatFromSys`` on Linux)."""
    mode = (st_mode & MODE_PERM) | _TYPE_BITS.get(statmod.S_IFMT(st_mode), MODE_IRREGULAR)
    if st_mode & statmod.S_ISUID:
        mode |= MODE_SETUID
    if st_mode & statmod.S_ISGID:
        mode |= MODE_SETGID
    if st_mode & statmod.S_ISVTX:
        mode |= MODE_STICKY
    return mode


def unix_mode(go_mode: int) -> int:
    """The unix ``st_mode`` a Go ``os.FileMode`` stands for (the inverse of go_file_mode)."""
    if go_mode & MODE_DIR:
        kind = statmod.S_IFDIR
    elif go_mode & MODE_SYMLINK:
        kind = statmod.S_IFLNK
    elif go_mode & MODE_NAMED_PIPE:
        kind = statmod.S_IFIFO
    elif go_mode & MODE_SOCKET:
        kind = statmod.S_IFSOCK
    elif go_mode & MODE_DEVICE:
        kind = statmod.S_IFCHR if go_mode & MODE_CHAR_DEVICE else statmod.S_IFBLK
    else:
        kind = statmod.S_IFREG
    mode = kind | (go_mode & MODE_PERM)
    if go_mode & MODE_SETUID:
        mode |= statmod.S_ISUID
    if go_mode & MODE_SETGID:
        mode |= statmod.S_ISGID
    if go_mode & MODE_STICKY:
        mode |= statmod.S_ISVTX
    return mode


def can_request_data(go_mode: int) -> bool:
    """fsutil's ``fileCanRequestData``: only entries without type bits (regular files) get an
    ID the receiver may ask for; both sides must agree, as IDs count every STAT."""
    return go_mode & MODE_TYPE == 0


def _raw(text: str) -> bytes:
    """A name as the file system holds it (Go strings are bytes: a name that is not UTF-8
    goes as it is, as the docker CLI sends it)."""
    return text.encode("utf-8", "surrogateescape")


@dataclass
class Stat:
    """fsutil ``types.Stat``: one entry of the walk (``path`` is relative, slash-separated)."""

    path: str
    mode: int = 0
    uid: int = 0
    gid: int = 0
    size: int = 0
    mod_time: int = 0  # nanoseconds since the epoch
    linkname: str = ""
    devmajor: int = 0
    devminor: int = 0
    xattrs: dict[str, bytes] = field(default_factory=dict)

    def encode(self) -> bytes:
        out = (
            wire.field_bytes(1, _raw(self.path))
            + wire.field_varint(2, self.mode)
            + wire.field_varint(3, self.uid)
            + wire.field_varint(4, self.gid)
            + wire.field_varint(5, self.size)
            + wire.field_varint(6, self.mod_time)
            + wire.field_bytes(7, _raw(self.linkname))
            + wire.field_varint(8, self.devmajor)
            + wire.field_varint(9, self.devminor)
        )
        for name in sorted(self.xattrs):  # a map is a repeated {1: key, 2: value} entry
            entry = wire.field_bytes(1, _raw(name)) + wire.field_bytes(2, self.xattrs[name])
            out += wire.field_message(10, entry)
        return out

    @classmethod
    def decode(cls, buf: bytes) -> Stat:
        st = cls(path="")
        for number, _, value in wire.iter_fields(buf):
            if isinstance(value, bytes):
                if number == 1:
                    st.path = value.decode("utf-8", "surrogateescape")
                elif number == 7:
                    st.linkname = value.decode("utf-8", "surrogateescape")
                elif number == 10:
                    entry = wire.fields(value)
                    key = entry.get(1, [b""])[0]
                    data = entry.get(2, [b""])[0]
                    if isinstance(key, bytes) and isinstance(data, bytes):
                        st.xattrs[key.decode("utf-8", "surrogateescape")] = data
            elif number in (2, 3, 4):
                setattr(st, ("mode", "uid", "gid")[number - 2], value & 0xFFFFFFFF)
            elif number in (5, 6, 8, 9):
                attr = {5: "size", 6: "mod_time", 8: "devmajor", 9: "devminor"}[number]
                setattr(st, attr, wire.signed64(value))
        return st

    @property
    def is_dir(self) -> bool:
        return bool(self.mode & MODE_DIR)

    @property
    def is_symlink(self) -> bool:
        return bool(self.mode & MODE_SYMLINK)


@dataclass
class Packet:
    """fsutil ``types.Packet``: the unit of the DiffCopy stream."""

    type: int
    stat: Stat | None = None
    id: int = 0
    data: bytes = b""

    def encode(self) -> bytes:
        out = wire.field_varint(1, self.type)
        if self.stat is not None:
            out += wire.field_message(2, self.stat.encode())
        return out + wire.field_varint(3, self.id) + wire.field_bytes(4, self.data)

    @classmethod
    def decode(cls, buf: bytes) -> Packet:
        packet = cls(type=PACKET_STAT)
        for number, _, value in wire.iter_fields(buf):
            if number == 1 and isinstance(value, int):
                packet.type = value
            elif number == 2 and isinstance(value, bytes):
                packet.stat = Stat.decode(value)
            elif number == 3 and isinstance(value, int):
                packet.id = value & 0xFFFFFFFF
            elif number == 4 and isinstance(value, bytes):
                packet.data = value
        return packet

    def describe(self) -> str:
        """A short line for logs and test failures: ``STAT dir/a 0o644``, ``REQ 3``."""
        name = PACKET_NAMES.get(self.type, f"type{self.type}")
        if self.type == PACKET_STAT:
            return f"{name} {self.stat.path} {self.stat.mode:#o}" if self.stat else f"{name} end"
        if self.type == PACKET_DATA:
            return f"{name} {self.id} {len(self.data)}B"
        if self.type == PACKET_REQ:
            return f"{name} {self.id}"
        if self.type == PACKET_ERR:
            return f"{name} {self.data.decode('utf-8', 'replace')}"
        return name


def data_packet(file_id: int, chunk: bytes) -> bytes:
    """An encoded DATA packet (hot path: no Packet object per chunk)."""
    return (
        wire.field_varint(1, PACKET_DATA)
        + wire.field_varint(3, file_id)
        + wire.field_bytes(4, chunk)
    )
