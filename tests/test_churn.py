"""Cluster churn between two runs, on assignments with a known difference."""

from musicvae.catalogue.churn import cluster_churn


def _run(clusters: dict[int, str]) -> dict[str, int]:
    return {track: c for c, tracks in clusters.items() for track in tracks}


def test_moves_births_deaths_splits_and_merges_are_read_off_the_flows():
    previous = _run({0: "abcdefghij", 1: "klmnopqrst", 2: "uvwx"})
    # a moves from 0 to 1; 1 splits in halves (one half under a new id 5); 2 merges into 0;
    # y is new and z left: neither counts.
    previous["z"] = 0
    current = _run({0: "bcdefghijuvwx", 1: "aklmno", 5: "pqrst"})
    current["y"] = 5

    churn = cluster_churn(previous, current)

    assert churn["tracks_compared"] == 24
    assert churn["tracks_moved"] == 1 + 5 + 4
    assert churn["share_moved"] == round(10 / 24, 4)
    assert churn["born"] == [5] and churn["died"] == [2]
    assert churn["splits"] == {"1": [1, 5]}
    assert churn["merges"] == {"0": [0, 2]}
    assert churn["flows"][0] == [0, 0, 9]
    assert sorted(churn["flows"]) == [[0, 0, 9], [0, 1, 1], [1, 1, 5], [1, 5, 5], [2, 0, 4]]
    assert 0 < churn["ari"] < 1


def test_the_same_assignment_under_the_same_ids_changes_nothing():
    run = _run({0: "abc", 1: "def", 2: "ghi"})
    churn = cluster_churn(run, dict(run))
    assert (churn["tracks_moved"], churn["ari"], churn["born"], churn["died"]) == (0, 1.0, [], [])
    assert churn["splits"] == churn["merges"] == {}
