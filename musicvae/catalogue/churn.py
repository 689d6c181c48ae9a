"""What a recluster run changed against the run before it: who moved, and what became of each
cluster (born, died, split, merged), read off the flows of tracks between the two runs' clusters.

Cluster ids are already matched across runs by member overlap (`clustering.stable_ids`), so a
track "moved" when its id changed, and a cluster id that only one run has was born or died.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Set

from musicvae.model.clustering import adjusted_rand

# A flow of tracks counts toward a split or a merge when it carries at least this share of the
# previous cluster's members: a cluster that sends a quarter or more of itself to each of two
# clusters has split; a cluster that takes a quarter or more of each of two has merged them.
SUBSTANTIAL = 0.25


def cluster_churn(flows: Mapping[tuple[int, int], int], old_ids: Set, new_ids: Set) -> dict:
    """Compare two runs from their flows: tracks per (previous id, current id) over the tracks
    both runs hold; `old_ids` and `new_ids` are every cluster id of each run.

    Returns the row of `cluster_run_changes` (without the run ids): tracks compared and moved,
    the share moved, the ARI between the two assignments, clusters born and died, splits
    (previous id -> current ids), merges (current id -> previous ids) and every flow
    [previous id, current id, tracks], largest first.
    """
    flows = {pair: n for pair, n in flows.items() if n}
    compared = sum(flows.values())
    sizes = Counter()
    for (p, _), n in flows.items():
        sizes[p] += n
    substantial = [(p, c) for (p, c), n in flows.items() if n >= SUBSTANTIAL * sizes[p]]
    splits = _grouped(substantial)
    merges = _grouped([(c, p) for p, c in substantial])
    moved = sum(n for (p, c), n in flows.items() if p != c)
    return {
        "tracks_compared": compared,
        "tracks_moved": moved,
        "share_moved": round(moved / compared, 4) if compared else 0.0,
        "ari": round(adjusted_rand(flows), 4) if compared else None,
        "born": sorted(set(new_ids) - set(old_ids)),
        "died": sorted(set(old_ids) - set(new_ids)),
        "splits": {str(k): v for k, v in splits.items()},
        "merges": {str(k): v for k, v in merges.items()},
        "flows": [[p, c, n] for (p, c), n in sorted(flows.items(), key=lambda f: (-f[1], f[0]))],
    }


def _grouped(pairs: list[tuple[int, int]]) -> dict[int, list[int]]:
    """key -> its values, for keys with two or more."""
    out: dict[int, list[int]] = {}
    for key, value in pairs:
        out.setdefault(key, []).append(value)
    return {k: sorted(v) for k, v in sorted(out.items()) if len(v) > 1}
