"""Write a Linux initramfs: a gzip'd cpio archive in the "newc" format, in pure Python.

The kernel unpacks it into its root filesystem before running ``/init``.  Only
what an initramfs needs is supported: directories, regular files, symbolic
links and device nodes.  Timestamps are 0 and the gzip header carries no name
or time, so the same inputs always give the same bytes.

Format (``Documentation/driver-api/early-userspace/buffer-format.rst``): each
entry is the ASCII magic ``070701``, 13 fields of 8 hex digits, the NUL
terminated name padded to a multiple of 4 bytes, then the data padded the
same way; the archive ends with an entry named ``TRAILER!!!``.
"""

from __future__ import annotations

import gzip
import io
import stat

__all__ = ["Initramfs"]


def _pad4(n: int) -> bytes:
    return b"\0" * (-n % 4)


class Initramfs:
    """Collects entries in memory; :meth:`to_gzip` returns the compressed archive.

    Names are paths inside the guest, with or without a leading ``/``.
    """

    def __init__(self) -> None:
        self._buf = io.BytesIO()
        self._ino = 1
        self._done = False
        self.names: list[str] = []

    def _entry(self, name: str, mode: int, data: bytes = b"", rdev: tuple[int, int] = (0, 0)) -> None:
        name = name.lstrip("/")
        raw = name.encode() + b"\0"
        fields = (
            self._ino,
            mode,
            0,
            0,  # ino, mode, uid, gid
            2 if stat.S_ISDIR(mode) else 1,
            0,  # nlink, mtime
            len(data),
            0,
            0,
            rdev[0],
            rdev[1],  # filesize, dev major/minor, rdev major/minor
            len(raw),
            0,  # namesize, check
        )
        head = b"070701" + b"".join(b"%08X" % f for f in fields)
        self._buf.write(head + raw + _pad4(len(head) + len(raw)))
        self._buf.write(data + _pad4(len(data)))
        self._ino += 1
        if name != "TRAILER!!!":
            self.names.append(name)

    def dir(self, name: str, mode: int = 0o755) -> None:
        self._entry(name, stat.S_IFDIR | mode)

    def file(self, name: str, data: bytes, mode: int = 0o644) -> None:
        self._entry(name, stat.S_IFREG | mode, data)

    def symlink(self, name: str, target: str) -> None:
        self._entry(name, stat.S_IFLNK | 0o777, target.encode())

    def chardev(self, name: str, major: int, minor: int, mode: int = 0o600) -> None:
        self._entry(name, stat.S_IFCHR | mode, rdev=(major, minor))

    def to_gzip(self, level: int = 9) -> bytes:
        """The archive (trailer added), gzip-compressed with a fixed header.  Call once."""
        if self._done:
            raise RuntimeError("the archive is already closed")
        self._entry("TRAILER!!!", 0)
        self._done = True
        return gzip.compress(self._buf.getvalue(), compresslevel=level, mtime=0)
