"""Model inputs: fixed-length log-mel spectrograms from audio bytes, TF-IDF vectors from lyrics.

Everything here is deterministic and side-effect free, so features can be cached by content hash
(`features/<MelConfig.key()>/<sha256 of the audio>.npy`) and recomputed anywhere.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import logging
from dataclasses import asdict, dataclass

import numpy as np
import soundfile as sf
import torch
import torchaudio
from sklearn.feature_extraction.text import TfidfVectorizer

from musicvae.errors import AudioDecodeError

log = logging.getLogger("musicvae.features")

TOP_DB = 80.0


@dataclass(frozen=True)
class MelConfig:
    sample_rate: int = 22050
    n_fft: int = 2048
    hop_length: int = 1024
    n_mels: int = 64
    clip_seconds: float = 29.0

    @property
    def n_samples(self) -> int:
        return int(round(self.sample_rate * self.clip_seconds))

    @property
    def n_frames(self) -> int:
        # The STFT is centred (torch's default), so there is one frame per hop plus one.
        return self.n_samples // self.hop_length + 1

    def to_dict(self) -> dict:
        return asdict(self)

    def key(self) -> str:
        """Short hash of every field: features computed with different settings never mix."""
        blob = json.dumps(self.to_dict(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:12]


def decode_audio(data: bytes) -> tuple[np.ndarray, int]:
    """Decode MP3/WAV/FLAC/OGG bytes to mono float32 samples (mean of the channels) and the rate."""
    try:
        wave, sr = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except Exception as exc:  # libsndfile reports corrupt input through several exception types
        raise AudioDecodeError(f"cannot decode audio ({len(data)} bytes): {exc}") from exc
    if wave.shape[0] == 0:
        raise AudioDecodeError(f"cannot decode audio ({len(data)} bytes): it holds no samples")
    if not np.isfinite(wave).all():
        raise AudioDecodeError(f"cannot decode audio ({len(data)} bytes): non-finite samples")
    return wave.mean(axis=1, dtype=np.float32), int(sr)


def _centre_crop_or_pad(wave: np.ndarray, n: int) -> np.ndarray:
    if len(wave) >= n:
        start = (len(wave) - n) // 2
        return wave[start : start + n]
    left = (n - len(wave)) // 2
    return np.pad(wave, (left, n - len(wave) - left))


def fit_clip(wave: np.ndarray, sr: int, cfg: MelConfig) -> np.ndarray:
    """Resample to `cfg.sample_rate`, then cut or pad to exactly `cfg.n_samples` samples.

    Policy: a longer recording is cropped around its CENTRE, which skips fade-ins, spoken intros
    and fade-outs that say little about the track; a shorter one is zero-padded SYMMETRICALLY
    (the extra sample, if the padding is odd, goes at the end), so short clips stay centred too.
    """
    wave = np.asarray(wave, dtype=np.float32)
    if sr != cfg.sample_rate and len(wave) > 0:
        # Resampling costs time in proportion to length: trim a full-length track to its centre
        # first, keeping a margin so the filter has real neighbours at the edges.
        margin = 64
        needed = int(np.ceil(cfg.n_samples * sr / cfg.sample_rate)) + 2 * margin
        if len(wave) > needed:
            wave = _centre_crop_or_pad(wave, needed)
        resampled = torchaudio.functional.resample(torch.from_numpy(wave), sr, cfg.sample_rate)
        wave = resampled.numpy()
    return np.ascontiguousarray(_centre_crop_or_pad(wave, cfg.n_samples), dtype=np.float32)


@functools.lru_cache(maxsize=8)
def _mel_transform(cfg: MelConfig, device: torch.device) -> torch.nn.Module:
    mel = torchaudio.transforms.MelSpectrogram(
        sample_rate=cfg.sample_rate,
        n_fft=cfg.n_fft,
        hop_length=cfg.hop_length,
        n_mels=cfg.n_mels,
        power=2.0,
    )
    to_db = torchaudio.transforms.AmplitudeToDB(stype="power", top_db=TOP_DB)
    return torch.nn.Sequential(mel, to_db).to(device).eval()


def log_mel(
    waves: np.ndarray | torch.Tensor, cfg: MelConfig, device: str | torch.device = "cpu"
) -> np.ndarray:
    """Batch of clips [B, n_samples] -> float32 log-mel power in dB, [B, n_mels, n_frames]."""
    if waves.ndim != 2:
        raise ValueError(f"log_mel expects a batch [B, n_samples], got shape {tuple(waves.shape)}")
    device = torch.device(device)
    x = torch.as_tensor(waves, dtype=torch.float32).to(device)
    with torch.inference_mode():
        # AmplitudeToDB applies its top_db floor per item of dim -3: as [B, 1, mel, time] each
        # clip gets its own floor, so a clip's features do not depend on its batch neighbours.
        spec = _mel_transform(cfg, device)(x.unsqueeze(1)).squeeze(1)
    return spec.float().cpu().numpy()


def mel_from_bytes(data: bytes, cfg: MelConfig) -> np.ndarray:
    """Decode, fit and transform one file: [n_mels, n_frames] float16, the size the cache stores."""
    wave, sr = decode_audio(data)
    clip = fit_clip(wave, sr, cfg)
    return log_mel(clip[None, :], cfg)[0].astype(np.float16)


class LyricsVectorizer:
    """TF-IDF bag of words over the most frequent `vocab_size` terms (scikit-learn style).

    Rows are L2-normalised, so every lyric weighs the same whatever its length; an empty or
    missing lyric becomes a zero row, which the model treats as "no lyrics".
    """

    # Below this many documents, requiring a term in two of them would leave too few terms.
    MIN_DOCS_FOR_MIN_DF = 20

    def __init__(self, vocab_size: int = 512):
        self.vocab_size = vocab_size

    def fit(self, texts: list[str]) -> LyricsVectorizer:
        texts = [t or "" for t in texts]
        n_docs = sum(bool(t.strip()) for t in texts)
        self._tfidf = TfidfVectorizer(
            max_features=self.vocab_size,
            sublinear_tf=True,
            stop_words="english",
            min_df=2 if n_docs >= self.MIN_DOCS_FOR_MIN_DF else 1,
            dtype=np.float32,
        )
        try:
            self._tfidf.fit(texts)
        except ValueError:  # scikit-learn's "empty vocabulary"
            # An audio-only catalogue (MERGE's Audio subsets) has no lyrics to learn from: the
            # model then trains and embeds from audio alone.
            log.warning("no usable words in %d lyrics: lyrics are left out", len(texts))
            self._tfidf, self.vocabulary_ = None, []
            return self
        self.vocabulary_ = self._tfidf.get_feature_names_out().tolist()
        log.info("lyrics vocabulary: %d terms from %d lyrics", len(self.vocabulary_), n_docs)
        return self

    def transform(self, texts: list[str]) -> np.ndarray:
        """[N, len(vocabulary_)] float32; the width is `vocab_size` unless the corpus is tiny."""
        if not hasattr(self, "vocabulary_"):
            raise RuntimeError("LyricsVectorizer.transform called before fit")
        if self._tfidf is None:
            # One all-zero column keeps the lyrics expert's input shape valid; it never fires.
            return np.zeros((len(texts), 1), dtype=np.float32)
        matrix = self._tfidf.transform([t or "" for t in texts])
        return np.asarray(matrix.toarray(), dtype=np.float32)

    def fit_transform(self, texts: list[str]) -> np.ndarray:
        return self.fit(texts).transform(texts)
