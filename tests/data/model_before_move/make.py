"""Wrote this folder: a tiny model version's artifacts (model.pt, vectorizer.pkl, config.json),
saved by `registry.save_artifacts` as the code stood before `musicvae/` became subpackages
(commit 4e09f41), with the inputs it was given and the embedding it made of them.

It imports the module paths of that commit, so it runs only there:
    git checkout 4e09f41 && python tests/data/model_before_move/make.py tests/data/model_before_move
tests/test_layout.py loads the result with today's code.
"""

import json
import sys
from pathlib import Path

import numpy as np

from musicvae import frontends, registry
from musicvae.features import LyricsVectorizer
from musicvae.train import TrainConfig, TrainingData, fit

WORDS = ["love", "night", "road", "fire", "rain", "heart", "dance", "light"]
MEL = {"n_mels": 8, "sample_rate": 1024, "n_fft": 128, "hop_length": 64, "clip_seconds": 0.9375}


class Folder:
    def __init__(self, path: Path):
        self.path = path

    def put_bytes(self, key: str, data: bytes) -> None:
        (self.path / key.split("/")[-1]).write_bytes(data)

    def put_json(self, key: str, value) -> None:
        (self.path / key.split("/")[-1]).write_text(json.dumps(value, indent=1, sort_keys=True))


def main(out: Path) -> None:
    rng = np.random.default_rng(0)
    texts = [" ".join(rng.choice(WORDS, 6)) for _ in range(24)]
    vectorizer = LyricsVectorizer(vocab_size=16).fit(texts)
    lyrics = vectorizer.transform(texts)
    audio = rng.normal(-40, 5, (24, 8, 16)).astype(np.float16)
    data = TrainingData(audio, np.ones(24, bool), lyrics, np.ones(24, bool))
    config = TrainConfig(epochs=2, latent_dim=3, width=4, batch_size=8, kl_warmup_epochs=1)
    trained = fit(data, config).fit_latent_scaling(data, np.arange(24))
    frontend = frontends.from_dict({"name": "mel", **MEL})
    registry.save_artifacts(Folder(out), "v", trained, vectorizer, {"frontend": frontend.to_dict()})
    np.save(out / "inputs_audio.npy", audio)
    np.save(out / "inputs_lyrics.npy", lyrics)
    np.save(out / "embedding.npy", trained.embed(data))
    (out / "texts.json").write_text(json.dumps(texts))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
