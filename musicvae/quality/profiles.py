"""What a track's content is (its profile) and what that means by the thresholds: one track's
checks, each an error that quarantines it or a warning that does not."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np
import soundfile as sf

from musicvae.core.audiofile import open_audio
from musicvae.core.lyrics import decode_lyrics
from musicvae.core.storage import ObjectStore
from musicvae.ingest.merge import QUADRANTS
from musicvae.quality.thresholds import Thresholds

AUDIO_FIELDS = (
    "audio_decodable",
    "audio_error",
    "codec",
    "sample_rate",
    "channels",
    "duration_s",
    "rms_dbfs",
    "peak",
    "clipped_fraction",
    "leading_silence_s",
    "trailing_silence_s",
    "digital_silence",
    "silence_dbfs",
)
LYRICS_FIELDS = (
    "lyrics_encoding",
    "lyrics_utf8",
    "lyrics_bom",
    "lyrics_chars",
    "lyrics_words",
    "lyrics_empty",
    "lyrics_garbage_ratio",
)
PAIRING = {  # (has audio, has lyrics)
    (True, True): "paired",
    (True, False): "audio_only",
    (False, True): "lyrics_only",
    (False, False): "none",
}
EXPECTED_PAIRING = {"audio": "audio_only", "lyrics": "lyrics_only", "bimodal": "paired"}
# Characters that are not garbage in song lyrics besides letters, digits and whitespace.
_PUNCTUATION = set(".,;:!?'\"()[]-–—…‘’“”&/*#%+=@$_~`<>|\\{}^")


@dataclass
class TrackCheck:
    track_id: str
    profile: dict = field(default_factory=dict)
    issues: list[tuple[str, str, str]] = field(default_factory=list)  # (check, severity, detail)

    def error(self, check: str, detail: str) -> None:
        self.issues.append((check, "error", detail))

    def warn(self, check: str, detail: str) -> None:
        self.issues.append((check, "warning", detail))

    @property
    def valid(self) -> bool:
        return not any(sev == "error" for _, sev, _ in self.issues)

    @property
    def reason(self) -> str | None:
        errors = [detail for _, sev, detail in self.issues if sev == "error"]
        return "; ".join(errors) or None


def profile_audio(data: bytes, silence_dbfs: float) -> dict:
    try:
        with open_audio(data) as f:
            sr, channels, fmt = f.samplerate, f.channels, f.format
            samples = f.read(dtype="float32", always_2d=True)
    except sf.LibsndfileError as e:
        return {"audio_decodable": False, "audio_error": e.error_string}
    except (RuntimeError, TypeError, ValueError) as e:
        return {"audio_decodable": False, "audio_error": str(e)}
    # The whole clip is in memory once: no pass below allocates more than a boolean mask or
    # one channel's magnitudes, and no index array of every loud sample is built.
    n = samples.shape[0]
    magnitude = np.abs(samples)
    peak = float(magnitude.max()) if samples.size else 0.0
    clipped = np.count_nonzero(magnitude >= 0.999) / samples.size if samples.size else 0.0
    mono = samples[:, 0] if channels == 1 else samples.mean(axis=1)
    level = magnitude[:, 0] if channels == 1 else np.abs(mono)
    loud = level > 10 ** (silence_dbfs / 20)
    if loud.any():
        leading, trailing = int(np.argmax(loud)), int(np.argmax(loud[::-1]))
    else:
        leading = trailing = n
    rms = float(np.sqrt(np.dot(mono, mono) / n)) if n else 0.0
    return {
        "audio_decodable": True,
        "audio_error": None,
        "codec": fmt,
        "sample_rate": sr,
        "channels": channels,
        "duration_s": round(n / sr if sr else 0.0, 3),
        "rms_dbfs": round(20 * np.log10(max(rms, 1e-10)), 2),
        "peak": round(peak, 4),
        "clipped_fraction": round(float(clipped), 5),
        "leading_silence_s": round(leading / max(sr, 1), 3),
        "trailing_silence_s": round(trailing / max(sr, 1), 3),
        "digital_silence": peak == 0.0,
        "silence_dbfs": silence_dbfs,
    }


def garbage_ratio(text: str) -> float:
    """Share of characters that are not letters, digits, whitespace or common punctuation."""
    if not text:
        return 0.0
    bad = sum(not (ch.isalnum() or ch.isspace() or ch in _PUNCTUATION) for ch in text)
    return round(bad / len(text), 4)


def profile_lyrics(data: bytes) -> dict:
    decoded = decode_lyrics(data)
    text = decoded.text.strip()
    return {
        "lyrics_encoding": decoded.encoding,
        "lyrics_utf8": not decoded.fallback,
        "lyrics_bom": decoded.encoding == "utf-8-sig",
        "lyrics_chars": len(text),
        "lyrics_words": len(re.findall(r"\w+", text)),
        "lyrics_empty": not text,
        "lyrics_garbage_ratio": garbage_ratio(text),
    }


# -- judging: what the profile means, by the thresholds ------------------------------------------


def judge_audio(p: dict, limits: Thresholds, check: TrackCheck) -> None:
    if not p["audio_decodable"]:
        check.error("audio_decodable", f"audio cannot be decoded: {p['audio_error']}")
        return
    duration, sr = p["duration_s"], p["sample_rate"]
    if p["digital_silence"]:
        check.error("audio_not_silent", "audio is digital silence")
    if not limits.min_duration_s <= duration <= limits.max_duration_s:
        check.error(
            "audio_duration",
            f"duration {duration:.1f} s outside "
            f"[{limits.min_duration_s:g}, {limits.max_duration_s:g}] s",
        )
    if sr < limits.min_sample_rate:
        check.error("audio_sample_rate", f"sample rate {sr} Hz below {limits.min_sample_rate} Hz")
    if p["clipped_fraction"] > limits.max_clipped_fraction:
        check.error("audio_clipping", f"{p['clipped_fraction']:.1%} of samples clipped")
    edge = max(p["leading_silence_s"], p["trailing_silence_s"])
    if not p["digital_silence"] and edge > limits.max_edge_silence_s:
        check.warn(
            "audio_edge_silence",
            f"more than {limits.max_edge_silence_s:g} s of silence at the start or end",
        )


def judge_lyrics(p: dict, limits: Thresholds, check: TrackCheck) -> None:
    if not p["lyrics_utf8"]:
        check.warn("lyrics_utf8", f"lyrics are not UTF-8; decoded as {p['lyrics_encoding']}")
    if p["lyrics_bom"]:
        check.warn("lyrics_bom", "lyrics start with a UTF-8 byte-order mark (removed)")
    if p["lyrics_empty"]:
        check.error("lyrics_empty", "lyrics are empty (only whitespace)")
    elif p["lyrics_words"] < limits.min_lyrics_words:
        check.error(
            "lyrics_length", f"lyrics have {p['lyrics_words']} words (< {limits.min_lyrics_words})"
        )
    elif p["lyrics_chars"] > limits.max_lyrics_chars:
        check.error(
            "lyrics_length",
            f"lyrics have {p['lyrics_chars']} characters (> {limits.max_lyrics_chars})",
        )
    if p["lyrics_garbage_ratio"] > limits.max_garbage_ratio:
        check.error(
            "lyrics_garbage",
            f"{p['lyrics_garbage_ratio']:.1%} of the lyrics are not text "
            f"(> {limits.max_garbage_ratio:.0%})",
        )


def check_track(row, store: ObjectStore, limits: Thresholds, known: dict) -> TrackCheck:
    """Profile one track (reusing a known profile of the same content) and judge it."""
    check = TrackCheck(row.track_id)
    p = check.profile
    if row.quadrant not in QUADRANTS:
        check.error("quadrant", f"quadrant {row.quadrant!r} is not one of Q1..Q4")
    if row.audio_key:
        cached = known.get(("audio", row.audio_sha256))
        p.update(cached or profile_audio(store.get_bytes(row.audio_key), limits.silence_dbfs))
        p["profiled"] = cached is None
        judge_audio(p, limits, check)
        suffix = row.audio_key.rsplit(".", 1)[-1].upper()
        if p["audio_decodable"] and p["codec"] != suffix:
            check.warn("audio_format", f"a {p['codec']} file named .{suffix.lower()}")
    if row.lyrics_key:
        cached = known.get(("lyrics", row.lyrics_sha256))
        p.update(cached or profile_lyrics(store.get_bytes(row.lyrics_key)))
        p["profiled"] = p.get("profiled", False) or cached is None
        judge_lyrics(p, limits, check)
    p["pairing"] = PAIRING[(bool(row.audio_key), bool(row.lyrics_key))]
    p["expected_pairing"] = EXPECTED_PAIRING[row.subset.split("_")[0]]
    if p["pairing"] != p["expected_pairing"]:
        check.error(
            "pairing",
            f"{row.subset} tracks are {p['expected_pairing']}, this one is {p['pairing']}",
        )
    p["duplicate_of"] = None
    return check
