"""The sample's audio: a 30 s clip synthesised per genre label (tempo, timbre, pitch range,
percussiveness, noise) with a light per-quadrant touch, and its MP3 encoding."""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import soundfile as sf

from musicvae.local.sample import seeding
from musicvae.local.sample.genres import PARENT

SAMPLE_RATE = 22050
CLIP_SECONDS = 30

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
    own = _random_style(seeding.name_rng(seed, label or "", "style"))
    parent = PARENT.get(label)
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
    rng = seeding.rng(seed, index, seeding.STREAM_AUDIO)
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


__all__ = ["encode_mp3", "genre_style", "render_audio"]
