import io
import pickle

import numpy as np
import pytest
import soundfile as sf
import torch
import torchaudio

from musicvae.core.errors import AudioDecodeError
from musicvae.model.features import (
    LyricsVectorizer,
    MelConfig,
    _log_mel_batch,
    _mel_basis,
    decode_audio,
    extract_mels,
    fit_clip,
    log_mel,
    mel_from_bytes,
)

SMALL = MelConfig(sample_rate=8000, n_fft=512, hop_length=256, n_mels=16, clip_seconds=1.0)


def tone(freq: float, seconds: float, sr: int, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def encode(wave: np.ndarray, sr: int, fmt: str) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, wave, sr, format=fmt)
    return buf.getvalue()


def test_decode_wav_round_trips_exactly():
    wave = tone(440, 0.5, 22050)
    decoded, sr = decode_audio(encode(wave, 22050, "WAV"))
    assert sr == 22050 and decoded.dtype == np.float32
    np.testing.assert_allclose(decoded, wave, atol=1e-4)  # 16-bit PCM quantisation


def test_decode_mp3_keeps_rate_and_length():
    wave = tone(440, 1.0, 22050)
    decoded, sr = decode_audio(encode(wave, 22050, "MP3"))
    assert sr == 22050
    assert abs(len(decoded) - len(wave)) <= 1152  # at most one MP3 frame of encoder padding


def test_stereo_is_averaged_to_mono():
    left, right = tone(440, 0.2, 8000, 0.4), np.zeros(1600, dtype=np.float32)
    decoded, _ = decode_audio(encode(np.stack([left, right], axis=1), 8000, "WAV"))
    assert decoded.ndim == 1
    np.testing.assert_allclose(decoded, left / 2, atol=1e-4)


def test_mp3_decodes_alike_with_and_without_in_memory_files(monkeypatch):
    # libsndfile must get a file descriptor (it then decodes without the GIL) where the OS has
    # in-memory files, and a file object elsewhere; the samples must not depend on which.
    data = encode(tone(440, 1.0, 22050), 22050, "MP3")
    opened, real = [], sf.SoundFile

    def spy(file, *args, **kwargs):
        opened.append(type(file))
        return real(file, *args, **kwargs)

    monkeypatch.setattr("musicvae.core.audiofile.sf.SoundFile", spy)
    from_memfd, sr = decode_audio(data)
    monkeypatch.delattr("os.memfd_create")  # as on macOS and Windows
    from_file_object, _ = decode_audio(data)
    assert opened == [int, io.BytesIO]
    assert sr == 22050
    np.testing.assert_array_equal(from_memfd, from_file_object)
    np.testing.assert_allclose(from_memfd, sf.read(io.BytesIO(data), dtype="float32")[0], atol=1e-6)


def test_a_machine_fault_is_not_blamed_on_the_file(monkeypatch):
    def exhausted(*args):
        raise OSError(24, "Too many open files")

    monkeypatch.setattr("os.memfd_create", exhausted)
    with pytest.raises(OSError, match="Too many open files") as raised:
        decode_audio(encode(tone(440, 0.2, 8000), 8000, "WAV"))
    assert not isinstance(raised.value, AudioDecodeError)


@pytest.mark.parametrize(
    "data",
    [b"", np.random.default_rng(0).bytes(4096), encode(tone(440, 1.0, 22050), 22050, "MP3")[:40]],
    ids=["empty", "random", "truncated-mp3"],
)
def test_undecodable_bytes_raise_a_clear_error(data):
    with pytest.raises(AudioDecodeError, match=rf"cannot decode audio \({len(data)} bytes\)"):
        decode_audio(data)


def test_fit_clip_crops_the_centre():
    cfg = MelConfig(sample_rate=10, clip_seconds=0.4)  # 4 samples
    out = fit_clip(np.arange(10, dtype=np.float32), 10, cfg)
    np.testing.assert_array_equal(out, [3, 4, 5, 6])


def test_fit_clip_pads_symmetrically():
    cfg = MelConfig(sample_rate=10, clip_seconds=0.7)  # 7 samples
    out = fit_clip(np.array([1, 2], dtype=np.float32), 10, cfg)
    np.testing.assert_array_equal(out, [0, 0, 1, 2, 0, 0, 0])
    assert out.dtype == np.float32


def test_fit_clip_resamples_48k_to_the_configured_rate():
    cfg = MelConfig(sample_rate=22050, clip_seconds=1.0)
    out = fit_clip(tone(440, 3.0, 48000), 48000, cfg)
    assert out.shape == (22050,)
    # Still a 440 Hz tone after resampling: the spectrum peaks at 440 Hz.
    spectrum = np.abs(np.fft.rfft(out))
    assert abs(np.argmax(spectrum) * 22050 / len(out) - 440) < 2


def test_n_frames_matches_log_mel_output():
    cfg = MelConfig()
    assert cfg.n_samples == 639450 and cfg.n_frames == 625
    waves = np.zeros((2, SMALL.n_samples), dtype=np.float32)
    assert log_mel(waves, SMALL).shape == (2, SMALL.n_mels, SMALL.n_frames)


def expected_band(freq: float, cfg: MelConfig) -> int:
    fb = torchaudio.functional.melscale_fbanks(
        cfg.n_fft // 2 + 1, 0.0, cfg.sample_rate / 2, cfg.n_mels, cfg.sample_rate
    )
    return int(fb[round(freq * cfg.n_fft / cfg.sample_rate)].argmax())


def test_tone_energy_lands_in_its_mel_band_and_louder_is_higher():
    quiet, loud = tone(440, 1.0, 8000, 0.05), tone(440, 1.0, 8000, 0.5)
    mels = log_mel(np.stack([quiet, loud]), SMALL)
    band = expected_band(440, SMALL)
    assert mels.dtype == np.float32
    assert mels[1].mean(axis=1).argmax() == band
    # 10x the amplitude is +20 dB of power.
    assert mels[1, band].mean() - mels[0, band].mean() == pytest.approx(20.0, abs=0.5)


def test_log_mel_of_a_clip_does_not_depend_on_its_batch():
    quiet, loud = tone(300, 1.0, 8000, 0.001), tone(2000, 1.0, 8000, 0.9)
    together = log_mel(np.stack([quiet, loud]), SMALL)
    alone = log_mel(quiet[None], SMALL)
    np.testing.assert_allclose(together[0], alone[0], atol=1e-4)
    assert together[0].max() - together[0].min() <= 80.0 + 1e-3  # top_db floor per clip


def noise_and_tone(cfg: MelConfig) -> np.ndarray:
    noise = np.random.default_rng(0).standard_normal(cfg.n_samples).astype(np.float32) * 0.1
    return np.stack([noise, tone(440, cfg.clip_seconds, cfg.sample_rate, 0.001)])


def torchaudio_log_mel(waves: np.ndarray, cfg: MelConfig) -> np.ndarray:
    """The feature definition: torchaudio's MelSpectrogram(power=2) + AmplitudeToDB(top_db=80)."""
    return (
        torch.nn.Sequential(
            torchaudio.transforms.MelSpectrogram(
                sample_rate=cfg.sample_rate,
                n_fft=cfg.n_fft,
                hop_length=cfg.hop_length,
                n_mels=cfg.n_mels,
                power=2.0,
            ),
            torchaudio.transforms.AmplitudeToDB(stype="power", top_db=80.0),
        )(torch.from_numpy(waves).unsqueeze(1))
        .squeeze(1)
        .numpy()
    )


@pytest.mark.parametrize("cfg", [SMALL, MelConfig()], ids=["small", "default"])
def test_log_mel_equals_torchaudio_melspectrogram_to_db(cfg):
    # log_mel computes the definition its own, faster way (floored per clip), and must give the
    # same numbers.
    waves = noise_and_tone(cfg)
    np.testing.assert_allclose(log_mel(waves, cfg), torchaudio_log_mel(waves, cfg), atol=1e-3)


def test_the_gpu_arrangement_of_log_mel_gives_the_same_numbers():
    # On CUDA, log_mel takes the whole batch in one chunk with a dense filterbank, where the CPU
    # goes clip by clip with a sparse one. The same arithmetic, run here on the CPU.
    waves = noise_and_tone(SMALL)
    window, sparse = _mel_basis(SMALL, torch.device("cpu"))
    assert sparse.layout == torch.sparse_csr
    with torch.inference_mode():
        out = _log_mel_batch(
            torch.from_numpy(waves), window, sparse.to_dense(), SMALL, chunk=SMALL.n_frames
        )
    np.testing.assert_allclose(out.numpy(), torchaudio_log_mel(waves, SMALL), atol=1e-3)


def test_log_mel_accepts_tensors():
    waves = torch.zeros(1, SMALL.n_samples)
    assert log_mel(waves, SMALL).shape == (1, SMALL.n_mels, SMALL.n_frames)


def test_mel_from_bytes_is_cache_sized():
    mel = mel_from_bytes(encode(tone(440, 0.5, 16000), 16000, "FLAC"), SMALL)
    assert mel.shape == (SMALL.n_mels, SMALL.n_frames) and mel.dtype == np.float16


def test_extract_mels_matches_one_clip_at_a_time_in_order():
    blobs = {
        f: encode(tone(f, 0.8 + f / 1000, SMALL.sample_rate), SMALL.sample_rate, "FLAC")
        for f in (220, 440, 880, 1760)
    }
    threads = torch.get_num_threads()
    out = extract_mels(blobs.__getitem__, list(blobs), SMALL, workers=2)
    expected = np.stack(
        [log_mel(fit_clip(*decode_audio(b), SMALL)[None], SMALL)[0] for b in blobs.values()]
    )
    np.testing.assert_array_equal(out, expected)
    assert torch.get_num_threads() == threads  # the one-thread setting is undone


def test_extract_mels_reports_an_undecodable_file():
    blobs = {"good": encode(tone(440, 1.0, 8000), 8000, "WAV"), "bad": b"not audio"}
    with pytest.raises(AudioDecodeError, match=r"cannot decode audio \(9 bytes\)"):
        extract_mels(blobs.__getitem__, ["good", "bad"], SMALL)


def test_key_is_stable_and_covers_every_field():
    assert MelConfig().key() == MelConfig().key()
    assert len(MelConfig().key()) == 12
    variants = [
        MelConfig(sample_rate=16000),
        MelConfig(n_fft=1024),
        MelConfig(hop_length=512),
        MelConfig(n_mels=128),
        MelConfig(clip_seconds=30.0),
    ]
    keys = {MelConfig().key(), *(v.key() for v in variants)}
    assert len(keys) == 6
    assert MelConfig().to_dict()["n_mels"] == 64


LYRICS = [
    "love heart baby love night",
    "heart love forever baby",
    "fire burn rage fire scream",
    "scream rage burn fire",
    "",
    "love fire",
]


def test_lyrics_vectorizer_shapes_and_empty_rows():
    vec = LyricsVectorizer(vocab_size=5).fit(LYRICS)
    x = vec.transform(LYRICS + ["", "unknownword"])
    assert x.shape == (8, len(vec.vocabulary_)) and len(vec.vocabulary_) == 5
    assert x.dtype == np.float32
    assert not x[4].any() and not x[6].any() and not x[7].any()
    np.testing.assert_allclose(np.linalg.norm(x[:4], axis=1), 1.0, rtol=1e-5)


def test_lyrics_vectorizer_pickles():
    vec = LyricsVectorizer(vocab_size=8).fit(LYRICS)
    clone = pickle.loads(pickle.dumps(vec))
    assert clone.vocabulary_ == vec.vocabulary_
    np.testing.assert_array_equal(clone.transform(LYRICS), vec.transform(LYRICS))


def test_lyrics_vectorizer_without_words_leaves_lyrics_out(caplog):
    vec = LyricsVectorizer().fit(["", "the and of"])
    assert vec.vocabulary_ == [] and "no usable words" in caplog.text
    x = vec.transform(["", "anything at all", "the"])
    assert x.shape == (3, 1) and not x.any()  # no row counts as having lyrics
    assert pickle.loads(pickle.dumps(vec)).transform(["x"]).shape == (1, 1)


def test_an_audio_only_catalogue_is_no_lyrics_problem(caplog):
    caplog.set_level("INFO", logger="musicvae.model.features")
    vec = LyricsVectorizer().fit(["", "", ""])
    assert vec.vocabulary_ == [] and "no lyrics among 3 tracks" in caplog.text
    assert not [r for r in caplog.records if r.levelname == "WARNING"]
