"""Audio bytes opened with libsndfile, in a way that lets several threads decode at once."""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Iterator

import soundfile as sf


@contextlib.contextmanager
def open_audio(data: bytes) -> Iterator[sf.SoundFile]:
    """`data` as an open `soundfile.SoundFile`, read from an in-memory file descriptor.

    From a Python file object libsndfile calls back into Python for every read it makes, taking
    the GIL each time, so threads decoding side by side mostly wait on each other. Given a file
    descriptor it reads by itself, and a whole decode runs without the GIL. Where the OS has no
    in-memory files (`os.memfd_create` is Linux only) the bytes are read through a file object.
    Raises what `soundfile.SoundFile` raises for input it cannot open.
    """
    if not hasattr(os, "memfd_create"):
        with sf.SoundFile(io.BytesIO(data)) as f:
            yield f
        return
    with open(os.memfd_create("musicvae-audio", os.MFD_CLOEXEC), "w+b") as buffer:
        buffer.write(data)
        buffer.seek(0)
        with sf.SoundFile(buffer.fileno(), closefd=False) as f:
            yield f
