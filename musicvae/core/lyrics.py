"""Decoding lyrics files, whose encodings are mixed in real MERGE releases."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DecodedLyrics:
    text: str
    encoding: str  # 'utf-8', 'utf-8-sig' (had a BOM) or the fallback used
    fallback: bool  # True when the bytes were not valid UTF-8


def decode_lyrics(data: bytes) -> DecodedLyrics:
    """UTF-8 first; otherwise cp1252, which decodes Latin-1 text and the Windows quotes in it."""
    if data.startswith(b"\xef\xbb\xbf"):
        return DecodedLyrics(data[3:].decode("utf-8", errors="replace"), "utf-8-sig", False)
    try:
        return DecodedLyrics(data.decode("utf-8"), "utf-8", False)
    except UnicodeDecodeError:
        pass
    try:
        return DecodedLyrics(data.decode("cp1252"), "cp1252", True)
    except UnicodeDecodeError:
        # cp1252 leaves five bytes undefined; latin-1 maps every byte.
        return DecodedLyrics(data.decode("latin-1"), "latin-1", True)
