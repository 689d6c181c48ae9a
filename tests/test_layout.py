"""The package's shape: subpackages import only downward, modules stay small, and model versions
saved before musicvae/ became subpackages still load."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import numpy as np
import pytest

from .conftest import REPO

PACKAGE = REPO / "musicvae"
# What each subpackage may import besides itself (its __init__ docstring says the same).
ALLOWED = {
    "core": set(),
    "ingest": {"core"},
    "model": {"core"},
    "registry": {"core", "model"},
    "quality": {"core", "ingest", "registry"},
    "retrain": {"core", "model", "registry"},
    "catalogue": {"core", "model", "registry", "quality"},
    "ui": {"core", "model", "registry", "quality"},
    "local": None,  # anything
}
MAX_LINES = 420  # "about 400"


def imported_parts(path: Path) -> set[str]:
    """The musicvae subpackages and top-level modules a file imports, wherever the import is."""
    parts = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        else:
            continue
        for name in names:
            bits = name.split(".")
            if bits[0] == "musicvae" and len(bits) > 1 and not bits[1].startswith("__"):
                parts.add(bits[1])
    return parts


def test_every_module_belongs_to_a_known_subpackage_or_the_top():
    top = {p.stem for p in PACKAGE.glob("*.py")}
    assert top == {"__init__", "cli", "assets"}
    assert {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists()} == set(ALLOWED)
    for name in ALLOWED:
        doc = ast.get_docstring(ast.parse((PACKAGE / name / "__init__.py").read_text()))
        assert doc and "import" in doc.lower(), (
            f"musicvae/{name}/__init__.py must say what it may import"
        )


@pytest.mark.parametrize("subpackage", sorted(k for k, v in ALLOWED.items() if v is not None))
def test_imports_run_only_downward(subpackage):
    allowed = ALLOWED[subpackage]
    wrong = {}
    for path in sorted((PACKAGE / subpackage).rglob("*.py")):
        bad = imported_parts(path) - allowed - {subpackage}
        if bad:
            wrong[str(path.relative_to(REPO))] = sorted(bad)
    assert wrong == {}, f"imports against the layering: {wrong}"


def test_the_layering_check_sees_an_upward_import(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from musicvae.local.stack import Stack\n")
    assert imported_parts(module) == {"local"}
    module.write_text("from musicvae import __version__\nfrom musicvae.core import db\n")
    assert imported_parts(module) == {"core"}


def test_no_module_is_much_over_400_lines():
    sizes = {
        str(p.relative_to(REPO)): len(p.read_text().splitlines()) for p in PACKAGE.rglob("*.py")
    }
    assert {p: n for p, n in sizes.items() if n > MAX_LINES} == {}


@pytest.mark.integration
def test_a_model_saved_before_the_move_still_loads_and_embeds_the_same(settings):
    from musicvae.core.storage import ObjectStore
    from musicvae.model.trained import TrainingData
    from musicvae.registry.versions import ModelVersion, load

    saved = REPO / "tests" / "data" / "model_before_move"
    assert b"musicvae.features" in (saved / "vectorizer.pkl").read_bytes()  # the old path
    store = ObjectStore(settings)
    for name in ("model.pt", "vectorizer.pkl", "config.json"):
        store.put_bytes(f"models/before-move/{name}", (saved / name).read_bytes())

    loaded = load(store, ModelVersion(1, "s", {}, "models/before-move", {}, "4e09f41"))

    texts = json.loads((saved / "texts.json").read_text())
    lyrics = loaded.vectorizer.transform(texts)
    np.testing.assert_allclose(lyrics, np.load(saved / "inputs_lyrics.npy"), atol=1e-6)
    audio = np.load(saved / "inputs_audio.npy")
    data = TrainingData(audio, np.ones(len(audio), bool), lyrics, np.ones(len(audio), bool))
    embedding = loaded.model.embed(data)
    np.testing.assert_allclose(embedding, np.load(saved / "embedding.npy"), atol=1e-4)
    assert loaded.frontend.to_dict()["n_mels"] == 8
