"""Large stored bodies as sealed memory files, so that hits can be sent with sendfile(2).

A cached jobs list is megabytes. Written from a ``bytes`` object, every hit costs a copy into the
socket and, past the socket buffer, another into asyncio's write buffer: 81% of the time of a
hit on an 8 MB list went there. nginx sends its cache files with sendfile; this is the same for
entries kept in memory: the body lives in an anonymous memory file (``memfd_create``), sealed
against writes, and mapped read-only so that the rest of the gateway still sees it as bytes.

The file descriptor is closed when the last reference to the :class:`BodyFile` goes (an entry
evicted while a hit is still being sent keeps it open until that send is done). Linux only; where
memory files are unavailable :func:`body_file` returns None and the body stays ``bytes``.
"""

from __future__ import annotations

import fcntl
import logging
import mmap
import os
import weakref
from typing import BinaryIO

__all__ = ["MIN_BYTES", "BodyFile", "body_file"]

log = logging.getLogger("slurmgate.cache")

#: Default of ``cache.memory_file_min_bytes``: below it a plain write costs less than sendfile's
#: extra steps (measured: 100 KB answers 20-35% faster as bytes, 200 KB ones 25% faster from a
#: memory file, 1 MB ones 40%); with the default 256 MiB budget it bounds the descriptors held
#: to 1,024, which ``slurmgate serve`` makes room for (server/cli/serve.py).
MIN_BYTES = 256 << 10

_SEALS = fcntl.F_SEAL_SEAL | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE


class BodyFile:
    """One body in a sealed, read-only memory file: ``fileno()`` for sendfile, ``view`` to read."""

    def __init__(self, fd: int, size: int) -> None:
        # The mapping outlives the descriptor if a reader still holds the view.
        self._map = mmap.mmap(fd, size, prot=mmap.PROT_READ)
        self.size = size
        self._fd = fd
        self._closer = weakref.finalize(self, os.close, fd)
        #: the body's bytes, without a copy
        self.view = memoryview(self._map)

    def fileno(self) -> int:
        """The memory file's descriptor (valid while this object is referenced)."""
        return self._fd

    def reader(self) -> BinaryIO:
        """A file object on the descriptor for ``loop.sendfile(..., fallback=False)``, which reads
        at explicit offsets; the position is shared by every reader, so read through
        :attr:`view` instead. Closing it leaves the descriptor open."""
        return open(self._fd, "rb", closefd=False)  # an open descriptor: nothing blocks


def body_file(body: bytes | memoryview) -> BodyFile | None:
    """``body`` in a new sealed memory file; None when the system cannot make one."""
    try:
        fd = os.memfd_create("slurmgate-body", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    except (AttributeError, OSError) as error:
        log.debug("cache: no memory file for a %d-byte body (%s)", len(body), error)
        return None
    try:
        view = memoryview(body)
        written = 0
        while written < len(body):
            written += os.write(fd, view[written:])
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS, _SEALS)
        return BodyFile(fd, len(body))
    except OSError as error:
        os.close(fd)
        log.debug("cache: no memory file for a %d-byte body (%s)", len(body), error)
        return None
