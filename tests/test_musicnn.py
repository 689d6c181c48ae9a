"""The PyTorch port of musicnn against the original TensorFlow network, and its weights' path.

The reference outputs in tests/data/musicnn/ were computed once by musicnn 0.1.0 itself under
TensorFlow (scripts/musicnn_reference.py, SOURCES.md) on three 7 s excerpts of real recordings.
"""

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from musicvae.model import frontends, musicnn
from musicvae.model.frontends import MelFrontend, MusicnnFrontend, from_dict, frontend
from musicvae.model.musicnn import LAYERS, MusicnnConfig, load_network, log_mel, patches
from musicvae.model.tfcheckpoint import CheckpointFormatError, load_checkpoint, read_index

DATA = Path(__file__).parent / "data" / "musicnn"
CLIPS = sorted(DATA.glob("*.flac"))
OUTPUTS = ("taggram", "penultimate", "mean_pool", "max_pool", "cnn3")
# The port and TensorFlow sum the same products in different orders: float32 rounding, relative
# to each output's largest value (measured: at most 3e-6).
RELATIVE_TOLERANCE = 2e-5


def test_the_reader_recovers_every_variable_of_the_checkpoint():
    tensors = load_checkpoint(musicnn.checkpoint_prefix("MSD_musicnn"))
    assert len(tensors) == 150  # 64 of the model, 84 Adam slots, 2 beta powers
    assert tensors["conv2d/kernel"].shape == (7, 38, 1, 204)
    assert tensors["conv2d_5/kernel"].shape == (7, 561, 1, 64)
    assert tensors["dense/kernel"].shape == (1506, 200)
    assert tensors["dense_1/kernel"].shape == (200, 50)
    assert all(t.dtype == np.float32 for t in tensors.values())
    # Trained statistics, not an initialiser's ones and zeros.
    assert not np.allclose(tensors["batch_normalization_9/moving_variance"], 1.0)


def test_the_reader_refuses_files_that_are_not_a_tensor_bundle(tmp_path):
    with pytest.raises(CheckpointFormatError, match="magic"):
        read_index(b"\0" * 64)
    with pytest.raises(CheckpointFormatError, match="too short"):
        read_index(b"abc")
    prefix = musicnn.checkpoint_prefix("MSD_musicnn")
    index = Path(prefix + ".index").read_bytes()
    (tmp_path / ".index").write_bytes(index)
    (tmp_path / ".data-00000-of-00001").write_bytes(b"\0" * 100)  # truncated data
    with pytest.raises(CheckpointFormatError, match="do not hold"):
        load_checkpoint(str(tmp_path) + "/")
    with pytest.raises(FileNotFoundError):
        load_checkpoint(str(tmp_path / "missing") + "/")


@pytest.mark.parametrize("model", ["MSD_musicnn", "MTT_musicnn"])
def test_the_port_equals_the_original_network_on_real_audio(model):
    ref = np.load(DATA / f"reference_{model}.npz")
    cfg = MusicnnConfig(model=model)
    net = load_network(model)
    assert [str(ref[f"clip{i}_name"]) for i in range(len(CLIPS))] == [c.name for c in CLIPS]
    for i, clip in enumerate(CLIPS):
        wave, rate = sf.read(clip, dtype="float32")
        assert rate == cfg.sample_rate
        mel = log_mel(torch.from_numpy(wave), cfg)
        np.testing.assert_allclose(mel.numpy(), ref[f"clip{i}_logmel"], atol=1e-4)
        with torch.inference_mode():
            out = net(patches(mel, cfg))
        for name in OUTPUTS:
            ours = out[name].numpy()
            if name == "cnn3":
                ours = ours.transpose(0, 2, 1)  # ours [P, C, T]; TensorFlow's [P, T, C]
            theirs = ref[f"clip{i}_{name}"]
            assert ours.shape == theirs.shape, name
            scale = np.abs(theirs).max()
            assert np.abs(ours - theirs).max() <= RELATIVE_TOLERANCE * scale, (clip.name, name)
        for name in ("timbral", "temporal"):
            ours, theirs = out[name][0].numpy().T, ref[f"clip{i}_{name}_patch0"]
            assert np.abs(ours - theirs).max() <= RELATIVE_TOLERANCE * np.abs(theirs).max()


def test_the_three_clips_sound_different_to_the_tagger():
    """A port with scrambled weights would still be deterministic; this one also tags."""
    ref = np.load(DATA / "reference_MSD_musicnn.npz")
    labels = list(ref["labels"])
    top = [labels[int(ref[f"clip{i}_taggram"].mean(0).argmax())] for i in range(len(CLIPS))]
    net, cfg = load_network("MSD_musicnn"), MusicnnConfig()
    for i, clip in enumerate(CLIPS):
        wave, _ = sf.read(clip, dtype="float32")
        with torch.inference_mode():
            tags = net(patches(log_mel(torch.from_numpy(wave), cfg), cfg))["taggram"].mean(0)
        assert labels[int(tags.argmax())] == top[i]
    assert "electronic" in top


def test_one_max_pool_equals_conv_relu_batch_norm_and_max_over_frequency():
    """The front end's blocks pool once over filters negated where batch norm's scale is
    negative; here half the scales are, in a block of random weights."""
    torch.manual_seed(0)
    block = musicnn._FrequencyPooledConv(8, (3, 5)).eval()
    with torch.no_grad():
        block.bn.weight.copy_(torch.linspace(-2, 2, 8))
        block.bn.running_mean.uniform_(-1, 1)
        block.bn.running_var.uniform_(0.5, 2)
    x = torch.randn(2, 1, 20, 12)
    with torch.inference_mode():
        expected = block.bn(torch.relu(block.conv(x))).amax(dim=3)
        torch.testing.assert_close(block(x), expected, rtol=1e-5, atol=1e-5)


def test_patches_drop_the_partial_tail_and_repeat_a_short_clip():
    cfg = MusicnnConfig()
    mel = torch.arange(400 * 96, dtype=torch.float32).reshape(400, 96)
    p = patches(mel, cfg)
    assert p.shape == (2, 187, 96)
    assert torch.equal(p[1], mel[187:374])
    short = patches(mel[:50], cfg)
    assert short.shape == (1, 187, 96)
    assert torch.equal(short[0, 50:100], mel[:50])


def test_patch_features_hold_every_layer_of_every_patch():
    wave, _ = sf.read(CLIPS[0], dtype="float32")
    features = musicnn.patch_features(wave, MusicnnConfig())
    assert features.shape == (2, musicnn.FEATURE_DIM)
    ref = np.load(DATA / "reference_MSD_musicnn.npz")
    np.testing.assert_allclose(musicnn.layer(features, "taggram"), ref["clip0_taggram"], atol=1e-5)
    with pytest.raises(ValueError, match="unknown musicnn layer"):
        musicnn.layer(features, "nope")


def test_converted_weights_are_cached_and_a_damaged_cache_is_rebuilt(tmp_path, monkeypatch):
    monkeypatch.setenv("MUSICVAE_CACHE_DIR", str(tmp_path))
    first = musicnn.state_dict("MSD_musicnn")
    (cached,) = (tmp_path / "frontends").glob("*.pt")
    assert cached.with_suffix(".pt.sha256").is_file()
    cached.write_bytes(cached.read_bytes()[:-10])  # truncated
    again = musicnn.state_dict("MSD_musicnn")
    assert again.keys() == first.keys()
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert musicnn.state_dict("MSD_musicnn")["dense.weight"].shape == (200, 1506)


def test_threads_that_find_no_cache_all_convert_and_leave_one_whole_file(tmp_path, monkeypatch):
    from concurrent.futures import ThreadPoolExecutor

    monkeypatch.setenv("MUSICVAE_CACHE_DIR", str(tmp_path))
    with ThreadPoolExecutor(max_workers=4) as pool:
        weights = list(pool.map(lambda _: musicnn.state_dict("MSD_musicnn"), range(4)))
    assert all(torch.equal(w["dense.weight"], weights[0]["dense.weight"]) for w in weights)
    assert sorted(p.suffix for p in (tmp_path / "frontends").iterdir()) == [".pt", ".sha256"]
    assert torch.equal(
        musicnn.state_dict("MSD_musicnn")["dense.weight"], weights[0]["dense.weight"]
    )


def test_weights_of_another_release_are_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("MUSICVAE_CACHE_DIR", str(tmp_path))
    monkeypatch.setitem(musicnn.CHECKPOINTS, "MSD_musicnn", ("0" * 64, "1" * 64))
    with pytest.raises(musicnn.FrontendUnavailableError, match="--force-reinstall"):
        musicnn.state_dict("MSD_musicnn")


def test_a_missing_wheel_says_how_to_install_it(monkeypatch):
    monkeypatch.setattr(musicnn.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(musicnn.FrontendUnavailableError, match="pip install --no-deps"):
        musicnn.checkpoint_prefix("MSD_musicnn")


def test_front_ends_stack_patches_and_round_trip_their_settings():
    rng = np.random.default_rng(0)
    clips = [rng.standard_normal((n, musicnn.FEATURE_DIM)).astype(np.float16) for n in (3, 10)]
    fe = MusicnnFrontend()
    rows = [fe.row(clips[0]), None, fe.row(clips[1])]
    stacked = fe.stack(rows)
    assert rows == [None, None, None]  # released as copied
    assert stacked.shape == (3, 10, LAYERS["mean_pool"])
    np.testing.assert_array_equal(stacked[0, :3], musicnn.layer(clips[0], "mean_pool"))
    assert not stacked[0, 3:].any() and not stacked[1].any()
    pooled = frontends.pooled(stacked)
    assert pooled.shape == (3, 2 * LAYERS["mean_pool"])
    first = musicnn.layer(clips[0], "mean_pool").astype(np.float32)
    np.testing.assert_allclose(pooled[0], np.hstack([first.mean(0), first.std(0)]), atol=1e-4)
    long = rng.standard_normal((200, musicnn.FEATURE_DIM)).astype(np.float16)
    assert fe.stack([fe.row(long)]).shape == (1, fe.max_patches, LAYERS["mean_pool"])
    for fe in (MusicnnFrontend(), MelFrontend(), MusicnnFrontend(layer="taggram")):
        again = from_dict(fe.to_dict())
        assert type(again) is type(fe) and again.to_dict() == fe.to_dict()
        assert again.key() == fe.key()
    # Models saved before front ends existed stored only their MelConfig.
    legacy = from_dict(MelFrontend().config.to_dict())
    assert isinstance(legacy, MelFrontend) and legacy.key() == MelFrontend().key()
    assert MusicnnFrontend().key() != MusicnnFrontend(MusicnnConfig(model="MTT_musicnn")).key()


def test_unknown_front_end_settings_are_refused_clearly():
    from musicvae.core.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="audio_frontend"):
        frontend("vggish")
    with pytest.raises(ConfigurationError, match="layer"):
        MusicnnFrontend(layer="conv9")


def test_every_install_path_takes_the_pinned_wheel_without_its_dependencies():
    root = Path(__file__).resolve().parents[1]
    makefile = (root / "Makefile").read_text()
    assert f"MUSICNN := {musicnn.WHEEL}" in makefile
    assert "pip install --quiet --no-deps $(MUSICNN)" in makefile
    assert (
        f"pip install --no-cache-dir --no-deps {musicnn.WHEEL}"
        in (root / "docker" / "Dockerfile").read_text()
    )


def test_a_retrain_without_epochs_takes_its_front_ends_default():
    from musicvae.core.errors import ConfigurationError
    from musicvae.model.frontends import EPOCHS
    from musicvae.retrain.steps import RetrainParams

    assert RetrainParams().audio_frontend == "musicnn"
    assert RetrainParams().epochs == EPOCHS["musicnn"]
    # The form sends null for an empty field; the record names the epochs that were trained.
    mel = RetrainParams.from_dict({"epochs": None, "audio_frontend": "mel", "seed": "3"})
    assert (mel.epochs, mel.seed) == (EPOCHS["mel"], 3)
    assert RetrainParams.from_dict({"epochs": 7}).epochs == 7
    assert RetrainParams(epochs=None).digest() == RetrainParams(epochs=EPOCHS["musicnn"]).digest()
    with pytest.raises(ConfigurationError, match="audio_frontend"):
        RetrainParams(audio_frontend="vggish")
