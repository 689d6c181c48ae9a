"""A deterministic, MERGE-shaped sample catalogue for proving the pipeline's plumbing.

The real MERGE Bimodal Balanced release (Louro et al. 2024) cannot ship with this repository,
yet the DAGs, the data checks and the model code all need a landing zone that looks like it:
the same folder layout, the same 27 metadata columns, the same ID shapes and the same dirty
corners (mojibake artist names, messy years, empty genres). `build_sample` writes such a tree.

The audio is synthesised per genre label with learnable structure (tempo, timbre, pitch range,
percussiveness, noise), and the lyrics mix per-genre words into a shared vocabulary, so a
working model finds *some* genre structure. That is only evidence that the plumbing carries
signal end to end; nothing measured on this sample says anything about model quality on music.

With ``defects=True`` the tree also carries the faults the pipeline must survive (empty and
corrupt audio, a Latin-1 lyrics file, rows without files, files without rows, a path-traversal
ID); `SampleSummary.defects` describes each.

Output depends only on (tracks, seed, defects), and a rebuild leaves identical files alone, so
downstream change detection sees no change.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import io
import json
import logging
import math
import multiprocessing
import os
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf
from tqdm import tqdm

from musicvae.ingest.merge import genre_label

logger = logging.getLogger("musicvae.local.sample")

ROOT_NAME = "MERGE_Bimodal_Balanced"
METADATA_NAME = "merge_bimodal_balanced_metadata.csv"
# The two shapes a sample can take: MERGE's bimodal subsets (audio/ and lyrics/ folders, rows
# keyed by Audio_Song + Lyric_Song) or its audio subsets (Q1..Q4 at the top, rows keyed by Song).
LAYOUTS = {"bimodal_balanced": "MERGE_Bimodal_Balanced", "audio_complete": "MERGE_Audio_Complete"}
# Marks a tree as ours (so stale files may be removed) and records what each MP3 was made from.
MARKER_NAME = ".musicvae-sample"
QUADRANTS = ("Q1", "Q2", "Q3", "Q4")
SAMPLE_RATE = 22050
CLIP_SECONDS = 30
WORKERS = 2

METADATA_COLUMNS = [
    "Audio_Song",
    "Lyric_Song",
    "Quadrant",
    "AllMusic Id",
    "AllMusic Extraction Date",
    "Artist",
    "Title",
    "Relevance",
    "Year",
    "LowestYear",
    "Duration",
    "Moods",
    "MoodsAll",
    "MoodsAllWeights",
    "Genres",
    "GenreWeights",
    "Themes",
    "ThemeWeights",
    "Styles",
    "StyleWeights",
    "AppearancesTrackIDs",
    "AppearancesAlbumIDs",
    "Sample",
    "SampleURL",
    "ActualYear",
    "num_Genres",
    "num_MoodsAll",
]

# Defect rows live in an MT number range that good rows (< 1,000,000) never reach.
DEFECT_IDS = {
    "empty_audio": "MT9999990001",
    "corrupt_audio": "MT9999990002",
    "latin1_lyrics": "MT9999990003",
    "missing_files": "MT9999990004",
    "orphan_files": "MT9999990005",
    "path_traversal": "../../etc/passwd",
}
_TRAVERSAL_LYRIC_ID = "MT9999990006"
_DEFECT_LABEL = "Pop"

# --------------------------------------------------------------------------------------------
# Genres
# --------------------------------------------------------------------------------------------

# (first entry of the Genres field, rows at 2000 tracks, parent label). The top eight counts and
# the 12 empty rows are the real MERGE Bimodal Balanced figures; the tail is invented but keeps
# the real shape (61 more labels, 348 rows). A parent makes the child sound and read like it.
GENRE_TABLE: tuple[tuple[str, int, str | None], ...] = (
    ("Pop/Rock", 637, None),
    ("Country", 248, None),
    ("Electronic", 205, None),
    ("Rap", 150, None),
    ("Blues", 129, None),
    ("Jazz", 114, None),
    ("R&B", 98, None),
    ("Folk", 59, None),
    ("Reggae", 33, None),
    ("Latin", 28, None),
    ("Vocal", 22, "Pop"),
    ("Easy Listening", 19, "Pop"),
    ("International", 17, None),
    ("Stage & Screen", 15, None),
    ("Religious", 14, None),
    ("New Age", 12, None),
    ("Classical", 11, None),
    ("Avant-Garde", 10, None),
    ("Comedy/Spoken", 9, None),
    ("Alternative/Indie Rock", 9, "Pop"),
    ("Soul", 8, "R&B"),
    ("Hard Rock", 8, "Pop"),
    ("Children's", 7, None),
    ("Holiday", 7, None),
    ("Punk/New Wave", 6, "Pop"),
    ("Hip-Hop/Urban", 6, "Rap"),
    ("Club/Dance", 6, "Electronic"),
    ("Singer/Songwriter", 5, "Folk"),
    ("Gospel", 5, "Religious"),
    ("Funk", 5, "R&B"),
    ("Heavy Metal", 5, "Pop"),
    ("Americana", 4, "Country"),
    ("Bluegrass", 4, "Country"),
    ("Celtic/British Isles", 4, "Folk"),
    ("Tropical", 4, "Latin"),
    ("Ambient", 4, "Electronic"),
    ("Contemporary Christian", 3, "Religious"),
    ("Lounge", 3, "Jazz"),
    ("Disco", 3, "R&B"),
    ("House", 3, "Electronic"),
    ("Soft Rock", 3, "Pop"),
    ("Swing", 3, "Jazz"),
    ("Trip-Hop", 3, "Electronic"),
    ("Soundtracks", 3, "Stage & Screen"),
    ("Brazilian Pop", 2, "Latin"),
    ("Caribbean", 2, "Reggae"),
    ("African", 2, "International"),
    ("Europop", 2, "Pop"),
    ("Downtempo", 2, "Electronic"),
    ("Techno", 2, "Electronic"),
    ("Industrial", 2, "Electronic"),
    ("Big Band", 2, "Jazz"),
    ("Show Tunes", 2, "Stage & Screen"),
    ("Cabaret", 2, "Vocal"),
    ("Experimental", 2, "Avant-Garde"),
    ("Adult Contemporary", 2, "Pop"),
    ("Bebop", 1, "Jazz"),
    ("Exotica", 1, "Jazz"),
    ("Trance", 1, "Electronic"),
    ("Dubstep", 1, "Electronic"),
    ("Spoken Word", 1, "Comedy"),
    ("Film Score", 1, "Stage & Screen"),
    ("Worship", 1, "Religious"),
    ("Alternative Country", 1, "Country"),
    ("Traditional Folk", 1, "Folk"),
    ("Latin Pop", 1, "Latin"),
    ("Asian Pop", 1, "International"),
    ("Noise", 1, "Avant-Garde"),
    ("Drum'n'Bass", 1, "Electronic"),
)
EMPTY_GENRE_ROWS = 12
REFERENCE_TRACKS = 2000
TOP_GENRES = 8
# Below this size one empty-Genres row would take too large a share of the sample.
_MIN_TRACKS_FOR_EMPTY = 20

# Related top-level genres: they share some lyric vocabulary so text alone cannot split them.
_SIBLINGS = {
    "Country": "Folk",
    "Folk": "Country",
    "Rap": "R&B",
    "R&B": "Rap",
    "Blues": "Jazz",
    "Jazz": "Blues",
}


_PRIMARY = {genre_label(name): name for name, _, _ in GENRE_TABLE}
_PARENT = {genre_label(name): parent for name, _, parent in GENRE_TABLE}


def genre_counts(tracks: int) -> dict[str | None, int]:
    """Rows per genre label (None = empty Genres) for a sample of `tracks` rows.

    The real 2000-track distribution scaled by largest remainder, so ``genre_counts(2000)`` is
    the reference itself. Small samples are then nudged so the top genres (and, from 20 rows,
    one empty-Genres row) still appear: tests and checks rely on those being present.
    """
    if tracks < 1:
        raise ValueError(f"tracks must be at least 1, got {tracks}")
    base = [(genre_label(name), count) for name, count, _ in GENRE_TABLE]
    base.append((None, EMPTY_GENRE_ROWS))
    counts = _largest_remainder([count for _, count in base], tracks)
    must_have = list(range(min(TOP_GENRES, tracks)))
    if tracks >= _MIN_TRACKS_FOR_EMPTY:
        must_have.append(len(base) - 1)
    for slot in must_have:
        if counts[slot] == 0:
            counts[int(np.argmax(counts))] -= 1
            counts[slot] = 1
    return {label: n for (label, _), n in zip(base, counts, strict=True) if n > 0}


def _largest_remainder(weights: Sequence[int], total: int) -> list[int]:
    whole = sum(weights)
    quotas = [w * total / whole for w in weights]
    counts = [math.floor(q) for q in quotas]
    # Ties go to the bigger genre, then to table order, so the result is fully deterministic.
    order = sorted(range(len(weights)), key=lambda i: (-(quotas[i] - counts[i]), -weights[i], i))
    for i in order[: total - sum(counts)]:
        counts[i] += 1
    return counts


# --------------------------------------------------------------------------------------------
# Seeding
# --------------------------------------------------------------------------------------------

_STREAM_PLAN, _STREAM_META, _STREAM_AUDIO, _STREAM_LYRICS, _STREAM_DEFECT = range(5)


def _rng(seed: int, *keys: int) -> np.random.Generator:
    # SeedSequence needs non-negative words; folding keeps any Python int a valid seed.
    return np.random.default_rng([seed % 2**63, *keys])


def _name_rng(seed: int, name: str, purpose: str) -> np.random.Generator:
    # hashlib, not hash(): Python salts str hashes per process, which would break determinism.
    digest = hashlib.sha256(f"{seed}\x00{purpose}\x00{name}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


# --------------------------------------------------------------------------------------------
# Audio synthesis
# --------------------------------------------------------------------------------------------

_MAJOR = np.array([0, 2, 4, 5, 7, 9, 11])
_MINOR = np.array([0, 2, 3, 5, 7, 8, 10])
_HARMONICS = 10


@dataclass(frozen=True)
class GenreStyle:
    """What makes a genre sound like itself; per-track variation is applied on top."""

    tempo: float  # beats per minute
    root: float  # MIDI note at the centre of the melody
    spread: int  # how many scale degrees the melody wanders either side of the chord
    rolloff: float  # harmonic amplitude ~ k ** -rolloff: low is buzzy, high is flute-like
    hollow: float  # 0..1 suppression of even harmonics (square-wave, clarinet-like)
    cutoff: float  # Hz, low-pass on the whole mix: the brightness of the record
    drums: float  # 0..1 level of the kick/snare
    hats: float  # 0..1 level of the hi-hat
    subdivision: int  # hi-hat hits per beat
    density: float  # melody notes per beat
    decay: float  # seconds, melody note decay: plucked vs sustained
    bass: float
    pad: float
    noise: float


_CONTINUOUS = ("tempo", "root", "rolloff", "hollow", "drums", "hats", "bass", "pad", "noise")
_LOGSCALE = ("cutoff", "decay")
_DISCRETE = ("spread", "subdivision", "density")


def genre_style(label: str | None, seed: int = 0) -> GenreStyle:
    """The sound of a genre label, from its name and the seed (children lean on their parent)."""
    own = _random_style(_name_rng(seed, label or "", "style"))
    parent = _PARENT.get(label)
    if parent is None:
        return own
    return _blend(genre_style(parent, seed), own, weight=0.55)


def _random_style(rng: np.random.Generator) -> GenreStyle:
    return GenreStyle(
        tempo=float(rng.uniform(64, 176)),
        root=float(rng.uniform(45, 76)),
        spread=int(rng.integers(2, 10)),
        rolloff=float(rng.uniform(0.5, 2.8)),
        hollow=float(rng.uniform(0, 1)),
        cutoff=float(np.exp(rng.uniform(np.log(700), np.log(7500)))),
        drums=float(rng.uniform(0, 1)),
        hats=float(rng.uniform(0, 1)),
        subdivision=int(rng.choice([2, 4])),
        density=float(rng.choice([0.5, 1.0, 2.0])),
        decay=float(np.exp(rng.uniform(np.log(0.06), np.log(0.9)))),
        bass=float(rng.uniform(0.15, 0.8)),
        pad=float(rng.uniform(0.0, 0.5)),
        noise=float(rng.uniform(0.0, 0.12)),
    )


def _blend(parent: GenreStyle, own: GenreStyle, weight: float) -> GenreStyle:
    values = {}
    for name in _CONTINUOUS:
        values[name] = weight * getattr(parent, name) + (1 - weight) * getattr(own, name)
    for name in _LOGSCALE:
        mixed = weight * np.log(getattr(parent, name)) + (1 - weight) * np.log(getattr(own, name))
        values[name] = float(np.exp(mixed))
    for name in _DISCRETE:
        values[name] = getattr(parent, name)
    return GenreStyle(**values)


@dataclass(frozen=True)
class _Track:
    """A genre style after this track's own jitter: what the renderer actually plays."""

    style: GenreStyle
    scale: np.ndarray
    gain: float


def _track_variant(style: GenreStyle, quadrant: str, rng: np.random.Generator) -> _Track:
    # Quadrant is a light touch (mode, energy, loudness) so that genre stays the dominant factor.
    aroused = quadrant in ("Q1", "Q2")
    positive = quadrant in ("Q1", "Q4")
    jittered = GenreStyle(
        tempo=style.tempo * rng.uniform(0.94, 1.06) * (1.04 if aroused else 0.96),
        root=style.root + rng.integers(-3, 4),
        spread=style.spread,
        rolloff=max(0.3, style.rolloff + rng.normal(0, 0.15)),
        hollow=float(np.clip(style.hollow + rng.normal(0, 0.1), 0, 1)),
        cutoff=style.cutoff * rng.uniform(0.8, 1.25) * (1.1 if aroused else 0.9),
        drums=float(np.clip(style.drums * rng.uniform(0.8, 1.2), 0, 1)),
        hats=float(np.clip(style.hats * rng.uniform(0.7, 1.3), 0, 1)),
        subdivision=style.subdivision,
        density=style.density,
        decay=style.decay * rng.uniform(0.8, 1.25),
        bass=style.bass * rng.uniform(0.7, 1.3),
        pad=style.pad * rng.uniform(0.7, 1.3),
        noise=style.noise * rng.uniform(0.7, 1.3),
    )
    gain = rng.uniform(0.5, 0.72) * (1.0 if aroused else 0.85)
    return _Track(jittered, _MAJOR if positive else _MINOR, float(gain))


def render_audio(label: str | None, quadrant: str, seed: int, index: int) -> np.ndarray:
    """The 30 s mono clip (float32, peak < 0.75) of track `index` with this genre and quadrant."""
    rng = _rng(seed, index, _STREAM_AUDIO)
    track = _track_variant(genre_style(label, seed), quadrant, rng)
    s = track.style
    # Whole-sample beat lengths (a multiple of 4 so notes and hi-hat ticks divide it) let every
    # layer be a one-shot table indexed by (n // length, n % length): no per-sample Python.
    beat = 4 * max(1, round(SAMPLE_RATE * 60.0 / s.tempo / 4))
    n = np.arange(SAMPLE_RATE * CLIP_SECONDS, dtype=np.int32)
    chords = rng.choice([0, 3, 4, 5, 1, 2], size=n.size // (4 * beat) + 1, p=_CHORD_ODDS)
    mix = _melody(n, beat, chords, track, rng)
    mix += s.bass * _bass(n, beat, chords, track)
    mix += s.pad * _pad(n, beat, chords, track)
    mix += _drums(n, beat, s, rng)
    mix += s.noise * rng.standard_normal(n.size, dtype=np.float32)
    mix = _lowpass(mix, s.cutoff)
    return (mix * (track.gain / np.max(np.abs(mix)))).astype(np.float32)


_CHORD_ODDS = [0.35, 0.2, 0.2, 0.15, 0.05, 0.05]


def _midi_of(degrees: np.ndarray, track: _Track, octave_shift: int = 0) -> np.ndarray:
    octave, step = np.divmod(degrees, 7)
    return track.style.root + 12 * (octave + octave_shift) + track.scale[step]


def _hz(midi: np.ndarray) -> np.ndarray:
    return 440.0 * 2.0 ** ((midi - 69.0) / 12.0)


def _play(table: np.ndarray, rows: np.ndarray, n: np.ndarray, length: int) -> np.ndarray:
    """Sample n plays position n % length of the table row of its event, rows[n // length]."""
    flat_index = rows[n // length] * table.shape[1] + n % length
    return table.reshape(-1).take(flat_index)


def _melody(n, beat, chords, track: _Track, rng) -> np.ndarray:
    s = track.style
    length = int(beat / s.density)
    notes = n.size // length + 1
    walk = np.clip(np.cumsum(rng.integers(-2, 3, size=notes)), -s.spread, s.spread)
    degrees = chords[np.arange(notes) * length // (4 * beat)] + walk
    pitches, rows = np.unique(degrees, return_inverse=True)
    tones = _tones(_hz(_midi_of(pitches, track)), length, s.rolloff, s.hollow)
    table = tones * _envelope(length, attack=0.006, decay=s.decay)
    return _play(table, rows, n, length)


def _tones(
    freqs: np.ndarray, length: int, rolloff: float, hollow: float, harmonics: int = _HARMONICS
) -> np.ndarray:
    """One row per frequency: a harmonic tone, harmonics above Nyquist left out."""
    phase = (2 * np.pi / SAMPLE_RATE) * freqs[:, None] * np.arange(length)[None, :]
    # Chebyshev recurrence sin(kx) = 2cos(x)sin((k-1)x) - sin((k-2)x): one sin and one cos for
    # all harmonics rather than one sin each.
    two_cos = 2 * np.cos(phase)
    prev, cur = np.zeros_like(phase), np.sin(phase)
    out = np.zeros_like(phase)
    for k in range(1, harmonics + 1):
        weight = k**-rolloff * (1.0 - hollow if k % 2 == 0 else 1.0)
        audible = (k * freqs < SAMPLE_RATE / 2)[:, None]
        out += np.where(audible, weight * cur, 0.0)
        prev, cur = cur, two_cos * cur - prev
    return out.astype(np.float32)


def _envelope(length: int, attack: float, decay: float) -> np.ndarray:
    since = np.arange(length) / SAMPLE_RATE
    # The short release before the next onset avoids a click at every note boundary.
    release = np.clip((length / SAMPLE_RATE - since) / 0.01, 0, 1)
    return ((1 - np.exp(-since / attack)) * np.exp(-since / decay) * release).astype(np.float32)


def _bass(n, beat, chords, track: _Track) -> np.ndarray:
    midi = np.maximum(_midi_of(chords, track, octave_shift=-2), 28)
    pitches, bar_rows = np.unique(midi, return_inverse=True)
    tones = _tones(_hz(pitches), beat, rolloff=1.7, hollow=0.0, harmonics=3)
    table = tones * _envelope(beat, attack=0.01, decay=0.6 * beat / SAMPLE_RATE)
    rows = np.repeat(bar_rows, 4)  # the bar's root on each of its four beats
    return _play(table, rows, n, beat)


def _pad(n, beat, chords, track: _Track) -> np.ndarray:
    bar = 4 * beat
    values, rows = np.unique(chords, return_inverse=True)
    triads = [_hz(_midi_of(values + offset, track, octave_shift=-1)) for offset in (0, 2, 4)]
    tones = sum(_tones(freqs, bar, rolloff=0.0, hollow=0.0, harmonics=1) for freqs in triads) / 3
    decay = 4 * bar / SAMPLE_RATE
    return _play(tones * _envelope(bar, attack=0.3, decay=decay), rows, n, bar)


def _drums(n, beat, s: GenreStyle, rng) -> np.ndarray:
    since = np.arange(beat) / SAMPLE_RATE
    # Kick: a sine swept down from ~135 Hz; the phase is the closed-form integral of the sweep.
    kick = np.sin(2 * np.pi * (45 * since + 90 * 0.03 * (1 - np.exp(-since / 0.03))))
    kick *= np.exp(-since / 0.12)
    snare = (0.6 * rng.standard_normal(beat) + np.sin(2 * np.pi * 185 * since)) * np.exp(
        -since / 0.07
    )
    # Row 0 is the kick alone (beats 1 and 3), row 1 adds the snare (the backbeat).
    table = (s.drums * np.stack([kick, kick + 0.7 * snare])).astype(np.float32)
    beats = _play(table, np.arange(n.size // beat + 1) % 2, n, beat)
    tick = beat // s.subdivision
    hiss = np.diff(rng.standard_normal(tick + 1))  # differencing tilts noise upward: a crude hi-hat
    hat = (0.35 * s.hats * hiss * np.exp(-np.arange(tick) / SAMPLE_RATE / 0.015))[None, :]
    return beats + _play(hat.astype(np.float32), np.zeros(n.size // tick + 1, int), n, tick)


def _lowpass(x: np.ndarray, cutoff: float) -> np.ndarray:
    spectrum = np.fft.rfft(x)
    freqs = np.fft.rfftfreq(x.size, 1 / SAMPLE_RATE)
    spectrum /= np.sqrt(1 + (freqs / cutoff) ** 4).astype(np.float32)  # 2nd-order Butterworth
    return np.fft.irfft(spectrum, n=x.size)


def encode_mp3(clip: np.ndarray) -> bytes:
    """MP3 bytes of a float clip in [-1, 1]."""
    # 16-bit quantisation first: it absorbs last-bit float differences between CPUs, so the
    # encoder sees the same input (and writes the same bytes) on more machines.
    pcm = np.round(np.clip(clip, -1, 1) * 32767).astype(np.int16)
    buffer = io.BytesIO()
    sf.write(buffer, pcm, SAMPLE_RATE, format="MP3")
    return buffer.getvalue()


# --------------------------------------------------------------------------------------------
# Lyrics
# --------------------------------------------------------------------------------------------


def _words(text: str, sep: str | None = None) -> list[str]:
    # Long word lists read better as running text than as list literals.
    return text.split(sep)


_SHARED_WORDS = _words("""
love heart night baby time day life world eyes soul fire rain light dream home road way
girl boy man woman friend mind hand hands face sky sun moon stars star river sea ocean
wind street city town song music dance feel know want need say tell go come run walk fly
fall rise hold let take give make break leave stay wait cry smile laugh sing play live die
lose find try believe remember forget hope fear tonight tomorrow yesterday forever always
never again alone together still only just more little long last first new old young free
true real wild high low deep cold warm hot sweet blue red gold black white golden broken
lonely crazy easy hard slow fast far close open door window wall floor bed room house car
train morning evening summer winter spring autumn kiss touch call dark shadow memory story
word words name heaven angel devil god prayer church money gold rich poor king queen
promise lie truth goodbye hello yeah oh ooh hey baby darling honey lady mister everybody
nobody somebody something nothing everything somewhere nowhere tears blood bones skin body
voice whisper shout echo silence noise sound beat rhythm rock roll radio heartbeat midnight
sunrise sunset horizon mountain valley field garden flower rose tree leaves snow storm
thunder lightning wave shore island bridge highway mile miles journey way back down up
inside outside over under through across around behind between beyond without within
naïve café déjà señorita
""")

_QUADRANT_WORDS = {
    "Q1": _words("happy joy alive shine bright celebrate party smile sunshine glow thrill wonder"),
    "Q2": _words("anger rage fight burn scream hate war danger fury storm trouble enemy"),
    "Q3": _words("sorrow tears grief lonely empty grey mourning ache regret fading cold hollow"),
    "Q4": _words("calm peace gentle quiet soft rest breeze tender slow easy drift serene"),
}

_ONSETS = _words("b br bl d dr f fr g gr gl k kr l m n p pr pl r s sh st t tr v z ch th w")
_VOWELS = _words("a e i o u ai ou ee oa ia")
_CODAS = ["", "", "", "n", "r", "l", "s", "m", "k", "nd", "st", "x"]
_GENRE_VOCAB = 40
_SHARED_WITH_PARENT = 12
_SHARED_WITH_SIBLING = 8


def _pseudo_words(rng: np.random.Generator, count: int) -> list[str]:
    # Invented words, kept apart from the English pools, so any genre separation a text model
    # finds comes from the words planted here.
    english = set(_SHARED_WORDS).union(*_QUADRANT_WORDS.values())
    words: list[str] = []
    while len(words) < count:
        syllables = int(rng.integers(2, 4))
        word = "".join(
            _ONSETS[rng.integers(len(_ONSETS))] + _VOWELS[rng.integers(len(_VOWELS))]
            for _ in range(syllables)
        )
        word += _CODAS[rng.integers(len(_CODAS))]
        if word not in words and word not in english:
            words.append(word)
    return words


def genre_vocabulary(label: str | None, seed: int = 0) -> list[str]:
    """The ~40 words that mark a genre's lyrics; related genres share part of theirs."""
    own = _pseudo_words(_name_rng(seed, label or "", "words"), _GENRE_VOCAB)
    relative, shared = _PARENT.get(label), _SHARED_WITH_PARENT
    if relative is None and label in _SIBLINGS:
        relative, shared = _SIBLINGS[label], _SHARED_WITH_SIBLING
    if relative is None:
        return own
    # The relative's *own* words, not its full vocabulary, so sibling links cannot recurse.
    borrowed = _pseudo_words(_name_rng(seed, relative, "words"), _GENRE_VOCAB)[:shared]
    return own[: _GENRE_VOCAB - shared] + borrowed


def render_lyrics(label: str | None, quadrant: str, seed: int, index: int) -> str:
    """Lyrics of track `index`: verses and a repeated chorus, about a third genre words."""
    rng = _rng(seed, index, _STREAM_LYRICS)
    pools = [genre_vocabulary(label, seed), _QUADRANT_WORDS[quadrant], _SHARED_WORDS]
    genre_share = rng.uniform(0.3, 0.4)
    weights = [genre_share, 0.08, 0.92 - genre_share]
    target = int(rng.integers(80, 251))
    chorus = _stanza(rng, pools, weights)
    stanzas: list[list[str]] = []
    words = 0
    while words < target:
        stanza = chorus if len(stanzas) % 3 == 1 else _stanza(rng, pools, weights)
        stanza = _fit(stanza, target - words)
        stanzas.append(stanza)
        words += sum(len(line.split()) for line in stanza)
    return "\n\n".join("\n".join(stanza) for stanza in stanzas) + "\n"


def _stanza(rng, pools: list[list[str]], weights: list[float]) -> list[str]:
    lines = []
    for _ in range(4):
        length = int(rng.integers(5, 10))
        choice = rng.choice(len(pools), size=length, p=weights)
        words = [pools[p][rng.integers(len(pools[p]))] for p in choice]
        lines.append(" ".join(words).capitalize())
    return lines


def _fit(stanza: list[str], budget: int) -> list[str]:
    # Trims the last stanza so the song lands inside the 80-250 word range.
    out, used = [], 0
    for line in stanza:
        words = line.split()
        if used + len(words) > budget:
            words = words[: max(budget - used, 0)]
        if not words:
            break
        out.append(" ".join(words))
        used += len(words)
    return out


# --------------------------------------------------------------------------------------------
# Metadata
# --------------------------------------------------------------------------------------------

# Guarantees every ID shape in any sample of at least three rows; MT rows dominate as in MERGE.
_ID_PATTERN = ("MT", "A", "A-", "MT", "A", "MT", "MT", "A", "MT", "A-")
_LYRIC_OFFSET = 50  # A001 <-> L051: the A/L numbering of MERGE's two halves is out of step

_FIRST = _words(
    "John Mary Ella Frank Nina Otis Patsy Willie Aretha Johnny Dolly Marvin Billie Sam "
    "Loretta Bobby Etta Ray Carole Neil Joni Stevie Whitney Luther Tammy Curtis Gladys Hank"
)
_LAST = _words(
    "Smith Cash Parton Gaye Holiday Cooke Lynn Dylan James Charles King Young Mitchell "
    "Wonder Houston Vandross Wynette Mayfield Knight Williams Brown Jones Carter Reed"
)
_BANDS = _words(
    "The Midnight Riders|The Velvet Hours|Silver Lanterns|The Paper Kites Revival|Northbound"
    "|Blue Harbor|The Static Hearts|Crimson Avenue|Golden Hour Club|The Low Tides",
    "|",
)
_ACCENTED = (
    "Michael Bublé",
    "Sinéad O’Connor",
    "Beyoncé",
    "Björk",
    "Mötley Crüe",
    "José González",
    "Françoise Hardy",
    "Sigur Rós",
    "Céline Dion",
    "Zoë Keating",
)
_TITLE_WORDS = _words(
    "Love Night Heart Fire Rain River Road Home Dream Blue Midnight Summer Angel Shadow "
    "Highway Tonight Forever Golden Broken Lonely Sweet Wild Morning Stars Train Letter"
)
_THEMES = _words(
    "Love|Heartache|Road Trip|Party Time|Late Night|Reflection|Romantic Evening|Summertime"
    "|Breakup|Rainy Day|Celebration|Drinking|Motivation|Girls Night Out|Introspection|Sex",
    "|",
)
_MOODS = {
    "Q1": "Exuberant|Energetic|Happy|Cheerful|Rousing|Fun|Joyous|Playful|Lively|Upbeat",
    "Q2": "Aggressive|Angry|Tense/Anxious|Fiery|Intense|Hostile|Confrontational|Brooding",
    "Q3": "Sad|Melancholy|Gloomy|Bleak|Wistful|Somber|Yearning|Lonely|Regretful|Bittersweet",
    "Q4": "Calm/Peaceful|Relaxed|Tender|Soothing|Warm|Gentle|Dreamy|Laid-Back|Serene|Sweet",
}
_MOODS_ANY = _words(
    "Reflective|Earnest|Sentimental|Passionate|Romantic|Confident|Stylish|Sensual", "|"
)


@dataclass(frozen=True)
class _Row:
    """One planned track: identity and the parts audio/lyrics rendering needs."""

    index: int
    audio_id: str
    lyric_id: str
    allmusic_id: str
    quadrant: str
    label: str | None


def _plan(tracks: int, seed: int) -> list[_Row]:
    rng = _rng(seed, _STREAM_PLAN)
    labels = [label for label, n in genre_counts(tracks).items() for _ in range(n)]
    labels = [labels[i] for i in rng.permutation(tracks)]
    allmusic = rng.choice(np.arange(1000, 1_000_000), size=tracks, replace=False)
    rows, a_number = [], 0
    for i in range(tracks):
        mt = f"MT{int(allmusic[i]):010d}"
        kind = _ID_PATTERN[i % len(_ID_PATTERN)]
        if kind == "MT":
            audio_id = lyric_id = mt
        else:
            a_number += 1
            suffix = f"-{int(rng.integers(10, 100))}" if kind == "A-" else ""
            audio_id = f"A{a_number:03d}{suffix}"
            lyric_id = f"L{a_number + _LYRIC_OFFSET:03d}{suffix}"
        quadrant = QUADRANTS[i * len(QUADRANTS) // tracks]
        rows.append(_Row(i, audio_id, lyric_id, mt, quadrant, labels[i]))
    return rows


def _metadata(row: _Row, seed: int) -> dict[str, object]:
    rng = _rng(seed, row.index, _STREAM_META)
    year = int(rng.integers(1955, 2019))
    genres = _genres_field(row.label, rng)
    moods, moods_all = _moods(row.quadrant, rng)
    styles = _styles(row.label, rng)
    themes = list(rng.choice(_THEMES, size=int(rng.integers(1, 4)), replace=False))
    return {
        "Audio_Song": row.audio_id,
        "Lyric_Song": row.lyric_id,
        "Quadrant": row.quadrant,
        "AllMusic Id": row.allmusic_id,
        "AllMusic Extraction Date": _extraction_date(rng),
        "Artist": _artist(row.index, rng),
        "Title": _title(row.index, rng),
        "Relevance": round(float(rng.uniform(0.2, 1.0)), 3),
        "Year": _messy_year(row.index, year, rng),
        "LowestYear": year,
        "Duration": int(rng.integers(140, 420)),
        "Moods": ",".join(moods),
        "MoodsAll": ",".join(moods_all),
        "MoodsAllWeights": _weights(len(moods_all), rng),
        "Genres": ",".join(genres),
        "GenreWeights": _weights(len(genres), rng),
        "Themes": ",".join(themes),
        "ThemeWeights": _weights(len(themes), rng),
        "Styles": ",".join(styles),
        "StyleWeights": _weights(len(styles), rng),
        "AppearancesTrackIDs": _id_list("MT", 10, rng),
        "AppearancesAlbumIDs": _id_list("MW", 10, rng),
        "Sample": 1,
        "SampleURL": _sample_url(rng),
        "ActualYear": year,
        "num_Genres": len(genres),
        "num_MoodsAll": len(moods_all),
    }


def _genres_field(label: str | None, rng) -> list[str]:
    if label is None:
        return []
    related = [_PRIMARY[other] for other, parent in _PARENT.items() if parent == label]
    for other in (_PARENT.get(label), _SIBLINGS.get(label)):
        if other is not None:
            related.append(_PRIMARY[other])
    related += [f"Contemporary {label}", f"Early {_PRIMARY[label]}", "Vocal", "Vocal Pop"]
    related = [g for g in dict.fromkeys(related) if g != _PRIMARY[label]]
    extra = rng.choice(related, size=int(rng.integers(0, min(6, len(related)) + 1)), replace=False)
    return [_PRIMARY[label], *(str(g) for g in extra)]


def _styles(label: str | None, rng) -> list[str]:
    name = label or "Pop"
    pool = [f"Contemporary {name}", f"{name} Ballads", f"Modern {name}", f"Traditional {name}"]
    return [str(s) for s in rng.choice(pool, size=int(rng.integers(1, 4)), replace=False)]


def _moods(quadrant: str, rng) -> tuple[list[str], list[str]]:
    own = _MOODS[quadrant].split("|")
    moods = [str(m) for m in rng.choice(own, size=int(rng.integers(1, 4)), replace=False)]
    more = rng.choice(own + _MOODS_ANY, size=int(rng.integers(3, 9)), replace=False)
    return moods, list(dict.fromkeys(moods + [str(m) for m in more]))


def _weights(count: int, rng) -> str:
    return ",".join(str(w) for w in sorted(rng.integers(1, 11, size=count).tolist(), reverse=True))


def _id_list(prefix: str, digits: int, rng) -> str:
    # Numbers from 1,000,000 up so appearances never alias a catalogue ID.
    numbers = rng.integers(1_000_000, 10**digits, size=int(rng.integers(1, 5)))
    return ",".join(f"{prefix}{int(n):0{digits}d}" for n in numbers)


def _sample_url(rng) -> str:
    token = base64.urlsafe_b64encode(rng.bytes(24)).decode().rstrip("=")
    return f"https://rovimusic.rovicorp.com/playback.mp3?c={token}&f=I"


def _extraction_date(rng) -> str:
    year, month, day = (int(rng.integers(lo, hi)) for lo, hi in ((2016, 2019), (1, 13), (1, 29)))
    return f"{year}-{month:02d}-{day:02d}"


def _mojibake(name: str, variant: int) -> str:
    # Both kinds of damage seen in MERGE: UTF-8 read as Latin-1, and bytes lost to U+FFFD.
    if variant % 2 == 0:
        return "".join(c if ord(c) < 128 else "\ufffd" for c in name)
    return name.encode("utf-8").decode("latin-1")


def _artist(index: int, rng) -> str:
    accented = _ACCENTED[int(rng.integers(len(_ACCENTED)))]
    if index % 6 == 1:
        return _mojibake(accented, index // 6)
    if index % 6 == 4:
        return accented
    if rng.uniform() < 0.3:
        return str(rng.choice(_BANDS))
    return f"{rng.choice(_FIRST)} {rng.choice(_LAST)}"


def _title(index: int, rng) -> str:
    a, b, c = (str(w) for w in rng.choice(_TITLE_WORDS, size=3, replace=False))
    # Commas and double quotes in titles are what break naive CSV handling.
    return {
        2: f"{a}, {b} {c}",
        3: f'The "{a}" {b}',
        4: f'{a}, "{b}" and {c}',
    }.get(index % 5, f"{a} {b}")


def _messy_year(index: int, year: int, rng) -> str:
    month, day = int(rng.integers(1, 13)), int(rng.integers(1, 29))
    forms = (
        str(year),
        f"{year}-??-??",
        f"{day:02d}/{month:02d}/{year}",
        str(year),
        f"{year}-{month:02d}-{day:02d}",
        f"{year}-{month:02d}-??",
        str(year),
    )
    return forms[index % len(forms)]


def _metadata_csv(rows: Iterable[dict[str, object]], audio_only: bool) -> bytes:
    # Imported here: audio workers import this module and do not need pandas' startup cost.
    import pandas as pd

    rows = list(rows)
    columns = METADATA_COLUMNS
    if audio_only:
        columns = ["Song", *METADATA_COLUMNS[2:]]
        rows = [{"Song": r["Audio_Song"], **r} for r in rows]
    frame = pd.DataFrame(rows, columns=columns)
    return frame.to_csv(index=False, lineterminator="\n").encode("utf-8")


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------


def write_if_changed(path: Path, data: bytes) -> bool:
    """Atomically write `data` to `path` unless it already holds exactly these bytes.

    Returns True when the file was (re)written. Unchanged files keep their mtime, which is what
    downstream change detection keys on.
    """
    try:
        if path.stat().st_size == len(data) and path.read_bytes() == data:
            return False
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    # Same folder, so os.replace is a rename on one filesystem: readers never see half a file.
    # A dot-name with .tmp keeps scanners that glob *.mp3 / *.txt away from it meanwhile.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return True


@functools.cache
def _code_fingerprint() -> bytes:
    # This module's source plus the library versions: any change to how audio is made changes
    # the fingerprint, so a rebuild after an upgrade renders again instead of trusting the cache.
    digest = hashlib.sha256(Path(__file__).read_bytes())
    digest.update(f"{np.__version__} {sf.__version__} {sf.__libsndfile_version__}".encode())
    return digest.digest()


@dataclass(frozen=True)
class _AudioJob:
    path: Path
    label: str | None
    quadrant: str
    seed: int
    index: int

    def key(self) -> str:
        digest = hashlib.sha256(_code_fingerprint())
        digest.update(repr((self.label, self.quadrant, self.seed, self.index)).encode())
        return digest.hexdigest()


def _audio_job(job: _AudioJob) -> tuple[bool, str]:
    data = encode_mp3(render_audio(job.label, job.quadrant, job.seed, job.index))
    return write_if_changed(job.path, data), hashlib.sha256(data).hexdigest()


def _render_audio(root: Path, jobs: list[_AudioJob], progress: bool) -> int:
    """Make every job's MP3 and return how many files were (re)written.

    Rendering is what makes a rebuild slow, so the marker file records, per file, the job key
    and the SHA-256 of the bytes written. A file whose key matches and whose bytes still hash
    to the record is known to be what rendering would produce again, and is skipped.
    """
    known = _read_manifest(root)
    manifest: dict[str, list[str]] = {}
    todo = []
    for job in jobs:
        rel, key = job.path.relative_to(root).as_posix(), job.key()
        record = known.get(rel)
        if record is not None and record[0] == key and _sha256_of(job.path) == record[1]:
            manifest[rel] = record
        else:
            todo.append(job)
    written = 0
    with tqdm(
        total=len(jobs),
        initial=len(jobs) - len(todo),
        desc="sample audio",
        unit="track",
        disable=not progress,
    ) as bar:
        for job, (changed, sha) in zip(todo, _map_audio_jobs(todo), strict=True):
            manifest[job.path.relative_to(root).as_posix()] = [job.key(), sha]
            written += changed
            bar.update()
    _write_manifest(root, manifest)
    return written


def _map_audio_jobs(jobs: list[_AudioJob]) -> Iterator[tuple[bool, str]]:
    # A daemonic process (e.g. a Celery prefork child) may not start children: render in-process.
    if len(jobs) < 2 or multiprocessing.current_process().daemon:
        yield from map(_audio_job, jobs)
        return
    # spawn, not fork: callers (Airflow workers, torch) may hold threads and locks that a
    # forked child would inherit in a broken state.
    context = multiprocessing.get_context("spawn")
    chunk = max(1, len(jobs) // (WORKERS * 8))
    with ProcessPoolExecutor(max_workers=WORKERS, mp_context=context) as pool:
        yield from pool.map(_audio_job, jobs, chunksize=chunk)


def _sha256_of(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except FileNotFoundError:
        return None


def _read_manifest(root: Path) -> dict[str, list[str]]:
    try:
        audio = json.loads((root / MARKER_NAME).read_text(encoding="utf-8"))["audio"]
    except (FileNotFoundError, ValueError, KeyError, TypeError):
        return {}  # no usable record: everything is rendered and compared byte for byte
    return audio if isinstance(audio, dict) else {}


def _write_manifest(root: Path, audio: dict[str, list[str]]) -> None:
    content = {
        "made_by": "musicvae.local.sample.build_sample; safe to delete and rebuild",
        "audio": audio,
    }
    write_if_changed(
        root / MARKER_NAME, (json.dumps(content, indent=1, sort_keys=True) + "\n").encode()
    )


@dataclass(frozen=True)
class SampleSummary:
    """What `build_sample` produced.

    `written` + `unchanged` count the audio, lyrics and metadata files (not the hidden marker).
    `genres` counts good rows per `genre_label`; rows with an empty Genres field are left out.
    """

    root: Path
    tracks: int
    genres: dict[str, int]
    written: int
    unchanged: int
    defects: list[str] = field(default_factory=list)


@dataclass
class _Build:
    """Everything one build will put on disk, collected before anything is written."""

    root: Path
    seed: int
    audio_only: bool = False
    rows: list[dict[str, object]] = field(default_factory=list)
    files: dict[Path, bytes] = field(default_factory=dict)
    audio: list[_AudioJob] = field(default_factory=list)
    defects: list[str] = field(default_factory=list)

    def audio_path(self, quadrant: str, audio_id: str) -> Path:
        folder = self.root if self.audio_only else self.root / "audio"
        return folder / quadrant / f"{audio_id}.mp3"

    def lyrics_path(self, quadrant: str, lyric_id: str) -> Path:
        return self.root / "lyrics" / quadrant / f"{lyric_id}.txt"

    def relative(self, row: _Row, kind: str) -> str:
        if kind == "audio":
            path = self.audio_path(row.quadrant, row.audio_id)
        else:
            path = self.lyrics_path(row.quadrant, row.lyric_id)
        return path.relative_to(self.root).as_posix()

    def add_track(self, row: _Row, with_row: bool = True) -> None:
        if with_row:
            self.rows.append(_metadata(row, self.seed))
        self.add_audio(row)
        self.add_lyrics(row)

    def add_audio(self, row: _Row) -> None:
        path = self.audio_path(row.quadrant, row.audio_id)
        self.audio.append(_AudioJob(path, row.label, row.quadrant, self.seed, row.index))

    def add_lyrics(self, row: _Row) -> None:
        if self.audio_only:
            return
        lyrics = render_lyrics(row.label, row.quadrant, self.seed, row.index)
        self.files[self.lyrics_path(row.quadrant, row.lyric_id)] = lyrics.encode("utf-8")


def build_sample(
    out_dir: Path,
    tracks: int = 200,
    seed: int = 0,
    defects: bool = False,
    progress: bool = True,
    layout: str = "bimodal_balanced",
) -> SampleSummary:
    """Write a MERGE-shaped catalogue of `tracks` good rows under `out_dir`.

    `layout` is the subset it imitates (`LAYOUTS`): MERGE_Bimodal_Balanced, with lyrics, or
    MERGE_Audio_Complete, audio only. The deliberate defects exist in the bimodal shape only.

    Same arguments, same bytes; files whose bytes would not change are not touched (so their
    mtimes stay put), and MP3s recorded in the tree's marker file as already rendered from the
    same inputs by the same code are not even rendered again. Files a previous build left
    behind that this build does not describe are removed, but only in a tree this function
    made: an existing foreign folder is refused (FileExistsError) rather than overwritten.

    Audio is rendered by 2 worker processes; each track's RNG is seeded from (seed, index),
    so the output does not depend on how the work is split.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; choose one of {sorted(LAYOUTS)}")
    audio_only = layout.startswith("audio")
    if defects and audio_only:
        raise ValueError("the deliberate defects need lyrics: use the bimodal_balanced layout")
    root = Path(out_dir) / LAYOUTS[layout]
    _claim(root)
    build = _Build(root, seed, audio_only)
    plan = _plan(tracks, seed)
    for row in plan:
        build.add_track(row)
    if defects:
        _add_defects(build, tracks)
    build.files[root / f"merge_{layout}_metadata.csv"] = _metadata_csv(build.rows, audio_only)

    written = sum(write_if_changed(path, data) for path, data in build.files.items())
    written += _render_audio(root, build.audio, progress)
    total = len(build.files) + len(build.audio)
    _remove_stale(root, set(build.files) | {job.path for job in build.audio})

    summary = SampleSummary(
        root=root,
        tracks=tracks,
        genres={label: n for label, n in genre_counts(tracks).items() if label is not None},
        written=written,
        unchanged=total - written,
        defects=build.defects,
    )
    logger.info(
        "sample catalogue at %s: %d tracks, %d genres, %d files written, %d unchanged, %d defects",
        root,
        tracks,
        len(summary.genres),
        written,
        summary.unchanged,
        len(build.defects),
    )
    return summary


def _claim(root: Path) -> None:
    marker = root / MARKER_NAME
    if root.exists() and any(root.iterdir()) and not marker.exists():
        raise FileExistsError(
            f"{root} already exists and was not made by build_sample (no {MARKER_NAME} file). "
            f"Pick another output folder; this one may hold a real MERGE release."
        )
    root.mkdir(parents=True, exist_ok=True)
    if not marker.exists():
        _write_manifest(root, {})


def _remove_stale(root: Path, keep: set[Path]) -> None:
    stale = [
        path
        for kind, suffix in (("audio", ".mp3"), ("lyrics", ".txt"), (".", ".mp3"))
        for quadrant in QUADRANTS
        for path in (root / kind / quadrant).glob("*")
        if path.is_file()
        and path not in keep
        and (path.suffix == suffix or path.name.endswith(".tmp"))
    ]
    for path in stale:
        path.unlink()
    if stale:
        logger.info("removed %d files left by an earlier build", len(stale))


# --------------------------------------------------------------------------------------------
# Deliberate defects
# --------------------------------------------------------------------------------------------

_LATIN1_LYRICS = (
    "No café da esquina eu deixei o meu coração\n"
    "Canção de saudade, ação e emoção\n"
    "Señor, à bientôt, façade, naïve\n"
)


def _add_defects(build: _Build, tracks: int) -> None:
    rows = {key: _defect_row(key, tracks + n) for n, key in enumerate(DEFECT_IDS)}
    build.defects += [
        _empty_audio(build, rows["empty_audio"]),
        _corrupt_audio(build, rows["corrupt_audio"], _rng(build.seed, _STREAM_DEFECT)),
        _latin1_lyrics(build, rows["latin1_lyrics"]),
        _row_without_files(build, rows["missing_files"]),
        _files_without_row(build, rows["orphan_files"]),
        _path_traversal_row(build, rows["path_traversal"]),
    ]


def _defect_row(key: str, index: int) -> _Row:
    audio_id = DEFECT_IDS[key]
    # The traversal row still needs a sane, unique lyric and AllMusic ID of its own.
    other_id = audio_id if audio_id.startswith("MT") else _TRAVERSAL_LYRIC_ID
    quadrant = QUADRANTS[index % len(QUADRANTS)]
    return _Row(index, audio_id, other_id, other_id, quadrant, _DEFECT_LABEL)


def _empty_audio(build: _Build, row: _Row) -> str:
    build.rows.append(_metadata(row, build.seed))
    build.files[build.audio_path(row.quadrant, row.audio_id)] = b""
    build.add_lyrics(row)
    return f"zero-byte audio: {build.relative(row, 'audio')} (row present, lyrics fine)"


def _corrupt_audio(build: _Build, row: _Row, rng: np.random.Generator) -> str:
    build.rows.append(_metadata(row, build.seed))
    build.files[build.audio_path(row.quadrant, row.audio_id)] = rng.bytes(4096)
    build.add_lyrics(row)
    return f"random bytes named .mp3: {build.relative(row, 'audio')} (row present, not audio)"


def _latin1_lyrics(build: _Build, row: _Row) -> str:
    build.rows.append(_metadata(row, build.seed))
    build.add_audio(row)
    build.files[build.lyrics_path(row.quadrant, row.lyric_id)] = _LATIN1_LYRICS.encode("latin-1")
    return f"Latin-1 lyrics: {build.relative(row, 'lyrics')} is not UTF-8 (row present, audio fine)"


def _row_without_files(build: _Build, row: _Row) -> str:
    build.rows.append(_metadata(row, build.seed))
    return f"row without files: {row.audio_id} has no audio and no lyrics"


def _files_without_row(build: _Build, row: _Row) -> str:
    build.add_track(row, with_row=False)
    return (
        f"files without a row: {build.relative(row, 'audio')} and "
        f"{build.relative(row, 'lyrics')} are not in the metadata"
    )


def _path_traversal_row(build: _Build, row: _Row) -> str:
    build.rows.append(_metadata(row, build.seed))
    return f"path-traversal ID: a row with Audio_Song {row.audio_id!r} (no files)"


__all__ = [
    "DEFECT_IDS",
    "MARKER_NAME",
    "METADATA_COLUMNS",
    "LAYOUTS",
    "METADATA_NAME",
    "ROOT_NAME",
    "SampleSummary",
    "build_sample",
    "encode_mp3",
    "genre_counts",
    "genre_label",
    "genre_style",
    "genre_vocabulary",
    "render_audio",
    "render_lyrics",
]
