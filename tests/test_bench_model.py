import numpy as np

from benchmarks.bench_model import linear_probe, probe_table


def _tracks(labels):
    return [{"genre": g, "track_id": f"t{i}"} for i, g in enumerate(labels)]


def test_linear_probe_finds_labels_the_statistics_hold_and_not_others():
    rng = np.random.default_rng(0)
    labels = np.repeat(["a", "b", "c"], 40)
    centres = {"a": 0.0, "b": 5.0, "c": 10.0}
    x = rng.normal(size=(120, 4)) + np.array([centres[g] for g in labels])[:, None]
    ids = [f"t{i}" for i in range(120)]

    told = linear_probe(x, _tracks(labels), ids)
    assert told["accuracy"] > 0.95 and told["nmi"] > 0.8

    shuffled = linear_probe(x, _tracks(rng.permutation(labels)), ids)
    assert shuffled["nmi"] < 0.2


def test_linear_probe_keeps_a_group_on_one_side_and_skips_unlabelled_rows():
    # Each group's rows share a feature value no other group has and one label. Split apart,
    # the classifier would learn a group's label from its siblings; kept together it cannot.
    rng = np.random.default_rng(1)
    groups = np.repeat(np.arange(30), 4)
    labels = np.array(["a", "b"])[rng.integers(0, 2, 30)][groups].astype(object)
    x = np.eye(30)[groups] * 10
    labels[:4] = None
    ceiling = linear_probe(x, _tracks(labels), [str(g) for g in groups])
    assert ceiling["nmi"] < 0.2


def test_probe_table_scores_each_representation_over_its_seeds(capsys):
    rng = np.random.default_rng(2)
    labels = np.repeat(["a", "b"], 50)
    signal = (labels == "b")[:, None] * 4.0 + rng.normal(size=(100, 3))
    noise = [rng.normal(size=(100, 3)) for _ in range(3)]
    ids = [f"t{i}" for i in range(100)]

    ceiling = {"accuracy": 0.5, "nmi": 0.25}
    probes = probe_table({"signal": signal, "noise": noise}, _tracks(labels), ids, ceiling)

    assert probes["signal"]["accuracy"] > 0.95
    assert probes["noise"]["nmi"] < 0.2
    noise_alone = np.mean([linear_probe(x, _tracks(labels), ids)["nmi"] for x in noise])
    assert probes["noise"]["nmi"] == noise_alone
    assert set(probes) == {"signal", "noise"}
    assert "supervised ceiling (PCA's input)   accuracy 0.500  NMI 0.250" in capsys.readouterr().out
