"""Messages over a pipe between fnl's processes: each one its length (4 bytes, network
order), then its bytes. Used by the template renderer's worker (`render_box`) and the
runtime's commit writer (`runtime.commits`)."""
from __future__ import annotations

import os
import select
import struct
import time
from typing import Optional

HEADER = struct.Struct("!I")


def write_frame(fd: int, payload: bytes) -> None:
    """One message, all of it (a write to a pipe may take only part)."""
    view = memoryview(HEADER.pack(len(payload)) + payload)
    while view:
        view = view[os.write(fd, view):]


def read_frame(fd: int, deadline: Optional[float] = None) -> Optional[bytes]:
    """One message, or None at the end of the stream; raises TimeoutError past `deadline`
    (a `time.monotonic()` time)."""
    def exactly(n: int) -> Optional[bytes]:
        chunks = []
        while n:
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0 or not select.select([fd], [], [], left)[0]:
                    raise TimeoutError
            chunk = os.read(fd, min(n, 1 << 20))
            if not chunk:
                return None
            chunks.append(chunk)
            n -= len(chunk)
        return b"".join(chunks)

    header = exactly(HEADER.size)
    if header is None:
        return None
    return exactly(HEADER.unpack(header)[0])
