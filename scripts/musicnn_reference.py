"""Golden reference outputs of the ORIGINAL musicnn network (TensorFlow) on short real clips.

What this is
------------
A one-off generator of test fixtures for the PyTorch port in ``musicvae/model/musicnn.py``.
It runs the unmodified TF v1 graph of ``musicnn==0.1.0`` (``musicnn.models.define_model``,
exactly as ``musicnn.extractor.extractor`` builds it) with the pretrained ``MSD_musicnn``
and ``MTT_musicnn`` checkpoints on the FLAC excerpts in ``tests/data/musicnn/`` and writes

    tests/data/musicnn/reference_MSD_musicnn.npz
    tests/data/musicnn/reference_MTT_musicnn.npz

Each npz holds, for clip ``i`` (FLAC files in sorted order):

    clip{i}_name              file name of the excerpt
    clip{i}_logmel            [n_frames, 96] float32, log10(10000 * mel + 1), ALL frames
    clip{i}_taggram           [P, 50]   sigmoid(logits), one row per 187-frame patch
    clip{i}_logits            [P, 50]   pre-sigmoid logits (extra; handy for saturated tags)
    clip{i}_penultimate       [P, 200]
    clip{i}_mean_pool         [P, 753]
    clip{i}_max_pool          [P, 753]
    clip{i}_cnn3              [P, 187, 64]
    clip{i}_timbral_patch0    [187, 408]  first patch only (size)
    clip{i}_temporal_patch0   [187, 153]  first patch only (size)
    clip{i}_cnn1_patch0       [187, 64]   first patch only (extra; localises a mismatch)
    clip{i}_cnn2_patch0       [187, 64]   first patch only (extra)

plus metadata scalars (strings / ints): ``model``, ``labels`` [50], ``n_clips``,
``tensorflow_version``, ``tf_keras_version``, ``librosa_version``, ``numpy_version``,
``musicnn_version``, ``stft_pad_mode``, ``sample_rate``, ``n_fft``, ``hop_length``,
``n_mels``, ``patch_frames``.

Patches are musicnn's defaults (input_length=3 s, no overlap): 187 frames each, starting
at frames 0, 187, ... while start + 187 <= n_frames (the last partial patch is dropped).
All patches of a clip are fed as one batch with ``is_training=False`` (batch-norm uses the
moving statistics, dropout is off).

Deviations from musicnn's own extractor (all are fixes, not changes of the model)
---------------------------------------------------------------------------------
1. float16 fix: musicnn's ``batch_data`` does ``mel.astype(np.float16)`` and then
   ``np.log10(10000 * mel + 1)``.  Under numpy 2 the product stays float16, overflows to
   inf for loud bins, and the network then outputs NaN.  Here the step is done in float32:
   ``np.log10(10000 * mel.astype(np.float32) + 1)`` (also no float16 quantisation).
2. Checkpoint restore: musicnn wraps ``saver.restore`` in a bare ``try/except`` that
   silently leaves RANDOM weights on failure.  Here the restore is unguarded and then
   checked: every graph variable must be in the checkpoint with the same shape, its
   restored value must equal the checkpoint tensor bit for bit, and a batch-norm
   ``moving_variance`` must not be all ones (i.e. not the initial value).
3. All patches of a clip go through the graph as one batch and every output is the true
   per-patch value.  (musicnn's extractor feeds one patch at a time and, for patches after
   the first, concatenates STALE patch-0 values of cnn1/cnn2/cnn3/penultimate: its loop
   unpacks into ``midend1_, midend2_, midend3_, backend_`` but appends ``cnn1_, cnn2_,
   cnn3_, penultimate_``.  Do not reproduce that bug in the port.)  For patch 0, and for
   taggram/mean_pool/max_pool/timbral/temporal of every patch, these references agree
   with the unmodified extractor (float32 front end patched in) to ~1e-6 relative
   (oneDNN round-off between batch sizes 1 and 2).

The mel spectrogram is musicnn's own call, ``librosa.feature.melspectrogram(y, sr=16000,
n_fft=512, hop_length=256, n_mels=96)`` with the INSTALLED librosa's defaults (center=True,
power 2, Slaney mel scale and norm, and the librosa version's default STFT ``pad_mode``;
librosa >= 0.10 pads with zeros, "constant", whereas the librosa 0.7 musicnn was released
with padded by reflection).  The pad mode used is stored as ``stft_pad_mode``.

Environment (THROWAWAY, never the project's .venv)
--------------------------------------------------
    python3.11 -m venv /tmp/tfenv
    /tmp/tfenv/bin/pip install tensorflow-cpu tf-keras librosa soundfile
    # musicnn 0.1.0 pins numpy<1.17; install it without dependencies
    /tmp/tfenv/bin/pip install --no-deps musicnn==0.1.0
    #   (or unpack the wheel and put its directory on PYTHONPATH)

Generated with tensorflow-cpu 2.21.0, tf-keras 2.21.0, librosa 0.11.0, numpy 2.4.6,
soundfile 0.14.0, Python 3.11.

Exact command lines (from the repository root)
----------------------------------------------
Cut the excerpts (only needed once; the FLACs are committed).  The sources are the
Debian bookworm packages supertux-data 0.6.3-2 and hedgewars-data 1.0.2-6, fetched with
``apt-get download`` and unpacked with ``dpkg -x <deb> <dir>`` (nothing installed)::

    TF_USE_LEGACY_KERAS=1 PYTHONPATH=/tmp/mnn/wheel /tmp/tfenv/bin/python \\
        scripts/musicnn_reference.py --cut \\
        /tmp/debs/st/usr/share/games/supertux2/music/antarctic/chipdisko.ogg \\
        /tmp/debs/st/usr/share/games/supertux2/music/antarctic/voc-night.ogg \\
        /tmp/debs/hw/usr/share/games/hedgewars/Data/Music/Jungle.ogg

Compute the references (what ``--cut`` also does afterwards)::

    TF_USE_LEGACY_KERAS=1 PYTHONPATH=/tmp/mnn/wheel /tmp/tfenv/bin/python \\
        scripts/musicnn_reference.py

Each excerpt is 7.0 s starting 20 s into the source (or centred if the source is shorter
than 27 s), mixed to mono (channel mean), resampled ONCE to 16 kHz with
``librosa.resample(res_type="soxr_hq")`` and stored as 16 kHz mono FLAC (PCM_16); if the
resampled peak exceeded 0.999 it would be scaled to 0.999 to avoid clipping (it did not
for the three committed excerpts; peaks 0.67, 0.20, 0.74).
Because the FLAC is already at 16 kHz, ``librosa.load(sr=16000)`` does not resample it,
so the original and the port read exactly the same samples.  7 s = 112000 samples ->
438 frames -> 2 patches per clip.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DATA_DIR = REPO / "tests" / "data" / "musicnn"
MODELS = ("MSD_musicnn", "MTT_musicnn")

SR = 16000
N_FFT = 512
HOP = 256
N_MELS = 96
EXCERPT_START_S = 20.0
EXCERPT_LEN_S = 7.0

# Known sources: path suffix inside the Debian package -> (output name, package, version).
EXCERPTS = {
    "usr/share/games/supertux2/music/antarctic/chipdisko.ogg": (
        "supertux_chipdisko.flac",
        "supertux-data",
        "0.6.3-2",
    ),
    "usr/share/games/supertux2/music/antarctic/voc-night.ogg": (
        "supertux_voc-night.flac",
        "supertux-data",
        "0.6.3-2",
    ),
    "usr/share/games/hedgewars/Data/Music/Jungle.ogg": (
        "hedgewars_jungle.flac",
        "hedgewars-data",
        "1.0.2-6",
    ),
}


# --------------------------------------------------------------------------- excerpts
def cut_excerpt(src: Path, out_dir: Path) -> Path:
    """7.0 s excerpt of `src` -> mono -> 16 kHz (one librosa resample) -> PCM_16 FLAC."""
    import librosa
    import soundfile as sf

    name = next(
        (v[0] for k, v in EXCERPTS.items() if src.as_posix().endswith(k)),
        f"{src.parent.name}_{src.stem}.flac".lower(),
    )
    audio, sr_in = sf.read(str(src), dtype="float32", always_2d=True)  # [samples, channels]
    mono = librosa.to_mono(audio.T)
    duration = len(mono) / sr_in
    start_s = (
        EXCERPT_START_S
        if duration >= EXCERPT_START_S + EXCERPT_LEN_S
        else max(0.0, (duration - EXCERPT_LEN_S) / 2)
    )
    a = int(round(start_s * sr_in))
    seg = mono[a : a + int(round(EXCERPT_LEN_S * sr_in))]
    y = librosa.resample(seg, orig_sr=sr_in, target_sr=SR, res_type="soxr_hq")
    n = int(round(EXCERPT_LEN_S * SR))
    assert abs(len(y) - n) <= 1, (len(y), n)
    y = np.pad(y, (0, max(0, n - len(y))))[:n]
    peak = float(np.max(np.abs(y)))
    if peak > 0.999:  # avoid clipping in PCM_16
        y = y * (0.999 / peak)
        print(f"  {name}: peak {peak:.4f} > 0.999, scaled down by {0.999 / peak:.4f}")
    out = out_dir / name
    sf.write(str(out), y, SR, subtype="PCM_16", format="FLAC")
    print(
        f"cut {src} [{start_s:.3f}s +{EXCERPT_LEN_S}s, sr {sr_in}, "
        f"{audio.shape[1]} ch] -> {out} ({out.stat().st_size} bytes)"
    )
    return out


# --------------------------------------------------------------------------- front end
def logmel(path: Path) -> np.ndarray:
    """musicnn's batch_data front end, float16 step replaced by float32: [frames, 96]."""
    import librosa

    audio, sr = librosa.load(str(path), sr=SR)  # file is 16 kHz already -> no resampling
    assert sr == SR
    mel = librosa.feature.melspectrogram(
        y=audio, sr=sr, hop_length=HOP, n_fft=N_FFT, n_mels=N_MELS
    ).T
    return np.log10(10000 * mel.astype(np.float32) + 1).astype(np.float32)


def patches(rep: np.ndarray, n_frames: int) -> np.ndarray:
    """musicnn's batching with overlap == n_frames (input_overlap=False)."""
    starts = range(0, rep.shape[0] - n_frames + 1, n_frames)
    return np.stack([rep[s : s + n_frames] for s in starts]).astype(np.float32)


# --------------------------------------------------------------------------- network
def _squeeze_last(a: np.ndarray) -> np.ndarray:
    """[P, 187, 64, 1] mid-end maps -> [P, 187, 64]."""
    return np.asarray(a, np.float32).reshape(a.shape[:3])


def stft_pad_mode() -> str:
    import inspect

    import librosa

    return str(inspect.signature(librosa.stft).parameters["pad_mode"].default)


def run_model(model: str, clips: list[Path], out_path: Path) -> dict:
    import librosa
    import tensorflow as tf

    tf.compat.v1.disable_eager_execution()
    import musicnn
    from musicnn import configuration as config
    from musicnn import models

    labels = config.MSD_LABELS if "MSD" in model else config.MTT_LABELS
    n_frames = int(librosa.time_to_frames(3, sr=SR, n_fft=N_FFT, hop_length=HOP)) + 1
    assert n_frames == 187, n_frames

    # graph exactly as musicnn.extractor.extractor builds it
    tf.compat.v1.reset_default_graph()
    with tf.name_scope("model"):
        x = tf.compat.v1.placeholder(tf.float32, [None, n_frames, N_MELS])
        is_training = tf.compat.v1.placeholder(tf.bool)
        (y, timbral, temporal, cnn1, cnn2, cnn3, mean_pool, max_pool, penultimate) = (
            models.define_model(x, is_training, model, len(labels))
        )
        normalized_y = tf.nn.sigmoid(y)

    # restore WITHOUT musicnn's silent try/except, then verify every variable
    prefix = os.path.join(os.path.dirname(musicnn.__file__), model) + "/"
    sess = tf.compat.v1.Session()
    sess.run(tf.compat.v1.global_variables_initializer())
    gvars = tf.compat.v1.global_variables()
    tf.compat.v1.train.Saver().restore(sess, prefix)
    # (tf.train.list_variables(prefix) would look for a 'checkpoint' file, whose stored
    # path is the author's machine; read the prefix directly instead)
    reader = tf.compat.v1.train.NewCheckpointReader(prefix)
    ckpt = reader.get_variable_to_shape_map()
    values = sess.run(gvars)
    for v, val in zip(gvars, values, strict=True):
        name = v.op.name
        assert name in ckpt, f"{model}: graph variable {name} not in checkpoint"
        assert list(ckpt[name]) == list(val.shape), (name, ckpt[name], val.shape)
        assert np.array_equal(reader.get_tensor(name), val), f"{name} not restored"
    extra = sorted(set(ckpt) - {v.op.name for v in gvars})
    mv = [v for v in gvars if v.op.name.endswith("moving_variance")]
    assert mv and not np.allclose(sess.run(mv[0]), 1.0), "moving_variance is all ones"
    print(
        f"[{model}] restored {len(gvars)} variables from {prefix} (all checked equal); "
        f"{len(extra)} checkpoint entries not in graph: {extra[:6]}"
    )

    out: dict = {
        "model": np.array(model),
        "labels": np.array(labels),
        "n_clips": np.array(len(clips)),
        "tensorflow_version": np.array(tf.__version__),
        "librosa_version": np.array(librosa.__version__),
        "numpy_version": np.array(np.__version__),
        "musicnn_version": np.array("0.1.0"),
        "stft_pad_mode": np.array(stft_pad_mode()),
        "sample_rate": np.array(SR),
        "n_fft": np.array(N_FFT),
        "hop_length": np.array(HOP),
        "n_mels": np.array(N_MELS),
        "patch_frames": np.array(n_frames),
    }
    try:
        import tf_keras

        out["tf_keras_version"] = np.array(tf_keras.__version__)
    except ImportError:
        pass

    fetch = [y, normalized_y, timbral, temporal, cnn1, cnn2, cnn3, mean_pool, max_pool, penultimate]
    for i, clip in enumerate(clips):
        rep = logmel(clip)
        batch = patches(rep, n_frames)
        (logits_, tag_, timb_, temp_, c1_, c2_, c3_, mean_, max_, pen_) = sess.run(
            fetch, feed_dict={x: batch, is_training: False}
        )
        res = {
            "name": np.array(clip.name),
            "logmel": rep,
            "taggram": tag_,
            "logits": logits_,
            "penultimate": pen_,
            "mean_pool": mean_,
            "max_pool": max_,
            "cnn3": _squeeze_last(c3_),
            "timbral_patch0": timb_[0],
            "temporal_patch0": temp_[0],
            "cnn1_patch0": _squeeze_last(c1_)[0],
            "cnn2_patch0": _squeeze_last(c2_)[0],
        }
        for k, v in res.items():
            if v.dtype.kind == "f":
                v = np.ascontiguousarray(v, dtype=np.float32)
                assert np.all(np.isfinite(v)), f"{clip.name} {k} has NaN/inf"
            out[f"clip{i}_{k}"] = v
        mean_tags = tag_.mean(axis=0)
        top = np.argsort(-mean_tags)[:5]
        print(
            f"[{model}] clip{i} {clip.name}: logmel {rep.shape}, {len(batch)} patches; top5: "
            + ", ".join(f"{labels[t]} {mean_tags[t]:.3f}" for t in top)
        )
    sess.close()
    np.savez_compressed(out_path, **out)
    print(f"wrote {out_path} ({out_path.stat().st_size} bytes)")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--cut",
        nargs="+",
        type=Path,
        metavar="SRC",
        help="source audio files (unpacked from the Debian packages) to cut "
        "7 s excerpts from into the data dir before computing references",
    )
    ap.add_argument("--data-dir", type=Path, default=DATA_DIR)
    ap.add_argument("--models", nargs="+", default=list(MODELS))
    args = ap.parse_args(argv)

    args.data_dir.mkdir(parents=True, exist_ok=True)
    if args.cut:
        for src in args.cut:
            cut_excerpt(src, args.data_dir)
    clips = sorted(args.data_dir.glob("*.flac"))
    if not clips:
        print(f"no FLAC files in {args.data_dir}; run with --cut first", file=sys.stderr)
        return 1
    for model in args.models:
        run_model(model, clips, args.data_dir / f"reference_{model}.npz")
    return 0


if __name__ == "__main__":
    sys.exit(main())
