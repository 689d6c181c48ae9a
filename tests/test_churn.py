"""Cluster churn between two runs, on assignments with a known difference."""

from collections import Counter

from sklearn.metrics import adjusted_rand_score

from musicvae.catalogue.churn import cluster_churn


def _run(clusters: dict[int, str]) -> dict[str, int]:
    return {track: c for c, tracks in clusters.items() for track in tracks}


def _churn(previous: dict[str, int], current: dict[str, int]) -> dict:
    """cluster_churn on the flows of two runs' assignments, as the recluster counts them."""
    common = previous.keys() & current.keys()
    flows = Counter((previous[t], current[t]) for t in common)
    return cluster_churn(flows, set(previous.values()), set(current.values()))


def test_moves_births_deaths_splits_and_merges_are_read_off_the_flows():
    previous = _run({0: "abcdefghij", 1: "klmnopqrst", 2: "uvwx"})
    # a moves from 0 to 1; 1 splits in halves (one half under a new id 5); 2 merges into 0;
    # y is new and z left: neither counts.
    previous["z"] = 0
    current = _run({0: "bcdefghijuvwx", 1: "aklmno", 5: "pqrst"})
    current["y"] = 5

    churn = _churn(previous, current)

    assert churn["tracks_compared"] == 24
    assert churn["tracks_moved"] == 1 + 5 + 4
    assert churn["share_moved"] == round(10 / 24, 4)
    assert churn["born"] == [5] and churn["died"] == [2]
    assert churn["splits"] == {"1": [1, 5]}
    assert churn["merges"] == {"0": [0, 2]}
    assert churn["flows"][0] == [0, 0, 9]
    assert sorted(churn["flows"]) == [[0, 0, 9], [0, 1, 1], [1, 1, 5], [1, 5, 5], [2, 0, 4]]
    common = sorted(previous.keys() & current.keys())
    expected = adjusted_rand_score([previous[t] for t in common], [current[t] for t in common])
    assert churn["ari"] == round(expected, 4) and 0 < churn["ari"] < 1


def test_the_same_assignment_under_the_same_ids_changes_nothing():
    run = _run({0: "abc", 1: "def", 2: "ghi"})
    churn = _churn(run, dict(run))
    assert (churn["tracks_moved"], churn["ari"], churn["born"], churn["died"]) == (0, 1.0, [], [])
    assert churn["splits"] == churn["merges"] == {}
