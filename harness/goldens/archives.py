"""Zip archives read one way only: the way every reader must agree on, or not at all.

torch.save files, TorchScript and lite-interpreter archives, torch.package archives and .pt2
programs are zip archives, and a zip can say two things at once: two members with one name (a
vetting that reads the last copy, a loader that reads the first), a local header that names other
bytes than the central directory, members that overlap, bytes hidden between members or before
the first. An Archive accepts only the canonical form torch writes itself, where there is nothing
left to disagree about:

- one end-of-central-directory record, at the very end (a comment is allowed), on one disk, with
  the ZIP64 records where it says so;
- a central directory that ends where that record begins, naming each member once (names are
  relative, without ``..`` or NUL), neither encrypted nor compressed other than stored or deflated;
- members laid end to end from offset 0 to the central directory, each local header agreeing
  with its central entry (name, method, sizes, CRC), no gaps, no overlaps;
- at most ``MAX_MEMBERS`` members inflating to at most ``MAX_INFLATED_BYTES`` in all; a member
  read no further than its declared size, its CRC checked.

The bytes a loader is then handed are the bytes that were checked (an artifact is loaded from
the same in-memory copy), and for a canonical archive every reader, torch's miniz included,
finds the same bytes under each name.
"""

from __future__ import annotations

import struct
import zlib

from harness.goldens.pickles import Refused

MAX_INFLATED_BYTES = 256 << 20
MAX_MEMBERS = 20_000

_EOCD = b"PK\x05\x06"
_EOCD64 = b"PK\x06\x06"
_LOCATOR64 = b"PK\x06\x07"
_CENTRAL = b"PK\x01\x02"
_LOCAL = b"PK\x03\x04"
_DESCRIPTOR = b"PK\x07\x08"
_METHODS = {0: "stored", 8: "deflated"}
#: general purpose flags: 0 encrypted, 6 strong encryption, 13 masked central directory
_ENCRYPTED = (1 << 0) | (1 << 6) | (1 << 13)
_HAS_DESCRIPTOR = 1 << 3


class Member:
    __slots__ = ("name", "raw", "method", "flags", "crc", "compressed", "size", "offset", "start")

    def __init__(self, name, raw, method, flags, crc, compressed, size, offset):
        self.name, self.raw, self.method, self.flags, self.crc = name, raw, method, flags, crc
        self.compressed, self.size, self.offset = compressed, size, offset
        self.start = 0  # where its data begins, after the local header


def is_zip(data: bytes) -> bool:
    return data[:4] == _LOCAL


class Archive:
    """A zip archive in the canonical form (see the module), its members' names and bytes."""

    def __init__(self, data: bytes, what: str):
        self.what, self._data = what, data
        try:
            members = self._central_directory()
        except (struct.error, IndexError, UnicodeDecodeError) as exc:
            raise Refused(f"{what} is not a readable zip archive: {exc}") from None
        self.infos, seen = {}, {}
        for member in members:
            # torch's reader (miniz) finds a member by its raw name bytes, ignoring ASCII case: two
            # names equal that way are one name to it, whichever copy the vetting read
            key = member.raw.lower()
            if key in seen or member.name in self.infos:
                other = seen.get(key, member.name)
                raise Refused(f"{what} holds two members named {member.name!r}"
                              + (f" and {other!r} (one name to torch's reader, which ignores case)"
                                 if other != member.name else "")
                              + ": readers would disagree on which one is meant")
            seen[key] = member.name
            self.infos[member.name] = member
        self._check_layout(members)

    def names(self) -> list[str]:
        return list(self.infos)

    def named(self, *endings: str) -> list[str]:
        """The members whose names end in one of ``endings``, case ignored as torch's reader ignores it."""
        return [n for n in self.infos if n.lower().endswith(tuple(e.lower() for e in endings))]

    def size(self, name: str) -> int:
        return self.infos[name].size

    def read(self, name: str) -> bytes:
        m = self.infos[name]
        raw = self._data[m.start:m.start + m.compressed]
        if m.method == 8:
            try:
                inflater = zlib.decompressobj(-15)
                data = inflater.decompress(raw, m.size + 1)
            except zlib.error as exc:
                raise Refused(f"{self.what}: member {name} is unreadable: {exc}") from None
        else:
            data = raw
        if len(data) != m.size:
            raise Refused(f"{self.what}: member {name} is not the size its header declares")
        if zlib.crc32(data) != m.crc:
            raise Refused(f"{self.what}: member {name} does not match its CRC")
        return data

    # -- the structure ---------------------------------------------------------------------------

    def _fail(self, why: str):
        raise Refused(f"{self.what} is not a zip archive as torch writes them: {why}")

    def _end_record(self) -> tuple[int, int, int, int]:
        """(members, central directory size, its offset, where the end records begin)."""
        data = self._data
        at = data.rfind(_EOCD, max(0, len(data) - 22 - 0xFFFF))
        if at < 0:
            self._fail("no end-of-central-directory record")
        (_sig, disk, cd_disk, here, total, cd_size, cd_offset, comment) = struct.unpack_from("<4s4H2LH", data, at)
        if at + 22 + comment != len(data):  # (a comment holding the signature lands here too)
            self._fail("bytes after its end record")
        if disk or cd_disk or here != total:
            self._fail("it spans several disks")
        start, locator = at, at - 20
        if locator >= 0 and data[locator:locator + 4] == _LOCATOR64:  # torch writes the ZIP64 records always
            (_s, _disk, record, _disks) = struct.unpack_from("<4sLQL", data, locator)
            if data[record:record + 4] != _EOCD64 or record + 56 > locator:
                self._fail("a ZIP64 locator pointing nowhere")
            (_s, rec_size, _v1, _v2, disk, cd_disk, here64, total64, size64, offset64) = \
                struct.unpack_from("<4sQ2H2L4Q", data, record)
            if disk or cd_disk or here64 != total64 or record + 12 + rec_size != locator:
                self._fail("a malformed ZIP64 end record")
            for narrow, wide, full in ((total, total64, 0xFFFF), (cd_size, size64, 0xFFFFFFFF),
                                       (cd_offset, offset64, 0xFFFFFFFF)):
                if narrow != full and narrow != wide:
                    self._fail("end records that disagree")
            total, cd_size, cd_offset, start = total64, size64, offset64, record
        elif 0xFFFF == total or 0xFFFFFFFF in (cd_size, cd_offset):
            self._fail("ZIP64 sizes without a ZIP64 locator")
        if cd_offset + cd_size != start:
            self._fail("bytes between its central directory and its end record")
        return total, cd_size, cd_offset, start

    def _central_directory(self) -> list[Member]:
        data = self._data
        total, cd_size, cd_offset, _start = self._end = self._end_record()
        if total > MAX_MEMBERS:
            raise Refused(f"{self.what} has {total} members (at most {MAX_MEMBERS} are read)")
        members, at, end, inflated = [], cd_offset, cd_offset + cd_size, 0
        for _ in range(total):
            if data[at:at + 4] != _CENTRAL:
                self._fail("a broken central directory")
            (_sig, _made, _need, flags, method, _t, _d, crc, csize, usize, n, m, k, disk, _ia, _ea, offset) = \
                struct.unpack_from("<4s6H3L5H2L", data, at)
            raw_name = data[at + 46:at + 46 + n]
            extra = data[at + 46 + n:at + 46 + n + m]
            at += 46 + n + m + k
            usize, csize, offset = _zip64(extra, usize, csize, offset, self._fail)
            name = raw_name.decode("utf-8" if flags & (1 << 11) else "cp437")
            if flags & _ENCRYPTED:
                self._fail(f"member {name!r} is encrypted")
            if method not in _METHODS:
                self._fail(f"member {name!r} uses compression method {method}, which is not read")
            if disk:
                self._fail(f"member {name!r} is on another disk")
            if not name or "\0" in name or name.startswith("/") or ".." in name.split("/") or "\\" in name:
                self._fail(f"member name {name!r} is not a plain relative name")
            if method == 0 and csize != usize:
                self._fail(f"stored member {name!r} declares two sizes")
            inflated += usize
            if inflated > MAX_INFLATED_BYTES:
                raise Refused(f"{self.what} would inflate to more than {MAX_INFLATED_BYTES} bytes "
                              f"(at most {MAX_INFLATED_BYTES} are read)")
            members.append(Member(name, bytes(raw_name), method, flags, crc, csize, usize, offset))
        if at != end:
            self._fail("a central directory whose size is not its entries'")
        return members

    def _check_layout(self, members: list[Member]) -> None:
        """Local headers agree with the central directory; members lie end to end from 0 up to it."""
        data = self._data
        cd_offset = self._end[2]
        expected = 0
        for member in sorted(members, key=lambda x: x.offset):
            if member.offset != expected:
                self._fail(f"member {member.name!r} does not begin where the one before it ends "
                           f"({'overlapping' if member.offset < expected else 'hidden bytes between'})")
            at = member.offset
            if data[at:at + 4] != _LOCAL:
                self._fail(f"member {member.name!r} has no local header where the directory says")
            (_sig, _need, flags, method, _t, _d, crc, csize, usize, n, m) = struct.unpack_from("<4s5H3L2H", data, at)
            name = data[at + 30:at + 30 + n].decode("utf-8" if flags & (1 << 11) else "cp437", "replace")
            if name != member.name or method != member.method or (flags & _ENCRYPTED):
                self._fail(f"member {member.name!r}: its local header says otherwise ({name!r})")
            if not flags & _HAS_DESCRIPTOR:
                usize, csize, _ = _zip64(data[at + 30 + n:at + 30 + n + m], usize, csize, 0, self._fail)
                if (crc, csize, usize) != (member.crc, member.compressed, member.size):
                    self._fail(f"member {member.name!r}: its local header declares other sizes or CRC")
            member.start = at + 30 + n + m
            expected = member.start + member.compressed
            if flags & _HAS_DESCRIPTOR:
                expected += _descriptor_length(data, expected, member, self._fail)
            if expected > cd_offset:
                self._fail(f"member {member.name!r} runs into the central directory")
        if expected != cd_offset:
            self._fail("hidden bytes between its last member and its central directory")


def _zip64(extra: bytes, usize: int, csize: int, offset: int, fail) -> tuple[int, int, int]:
    """Sizes and offset from a ZIP64 extra field where the 32-bit fields say so."""
    at = 0
    while at + 4 <= len(extra):
        tag, length = struct.unpack_from("<2H", extra, at)
        body = extra[at + 4:at + 4 + length]
        if tag == 1:
            values = list(struct.unpack_from(f"<{len(body) // 8}Q", body))
            if usize == 0xFFFFFFFF:
                usize = values.pop(0) if values else fail("a ZIP64 size without its value")
            if csize == 0xFFFFFFFF:
                csize = values.pop(0) if values else fail("a ZIP64 size without its value")
            if offset == 0xFFFFFFFF:
                offset = values.pop(0) if values else fail("a ZIP64 offset without its value")
        at += 4 + length
    return usize, csize, offset


def _descriptor_length(data: bytes, at: int, member: Member, fail) -> int:
    """The length of the data descriptor after a member's data, checked against its entry."""
    signed = data[at:at + 4] == _DESCRIPTOR
    base = at + (4 if signed else 0)
    for wide in (False, True):
        fmt = "<LQQ" if wide else "<3L"
        length = struct.calcsize(fmt) + (4 if signed else 0)
        try:
            crc, csize, usize = struct.unpack_from(fmt, data, base)
        except struct.error:
            continue
        if (crc, csize, usize) == (member.crc, member.compressed, member.size):
            return length
    fail(f"member {member.name!r}: its data descriptor declares other sizes or CRC")
    return 0
