"""What a recluster run changed against the run before it: who moved, and what became of each
cluster (born, died, split, merged), read off the flows of tracks between the two runs' clusters.

Cluster ids are already matched across runs by member overlap (`clustering.stable_ids`), so a
track "moved" when its id changed, and a cluster id that only one run has was born or died.
"""

from __future__ import annotations

from collections import Counter

from sklearn.metrics import adjusted_rand_score

# A flow of tracks counts toward a split or a merge when it carries at least this share of the
# previous cluster's members: a cluster that sends a quarter or more of itself to each of two
# clusters has split; a cluster that takes a quarter or more of each of two has merged them.
SUBSTANTIAL = 0.25


def cluster_churn(previous: dict[str, int], current: dict[str, int]) -> dict:
    """Compare two runs' assignments (track id -> cluster id) over the tracks both hold.

    Returns the row of `cluster_run_changes` (without the run ids): tracks compared and moved,
    the share moved, the ARI between the two assignments, clusters born and died, splits
    (previous id -> current ids), merges (current id -> previous ids) and every flow
    [previous id, current id, tracks], largest first.
    """
    common = sorted(previous.keys() & current.keys())
    before = [previous[t] for t in common]
    after = [current[t] for t in common]
    flows = Counter(zip(before, after, strict=True))
    sizes = Counter(before)
    substantial = [(p, c) for (p, c), n in flows.items() if n >= SUBSTANTIAL * sizes[p]]
    splits = _grouped(substantial)
    merges = _grouped([(c, p) for p, c in substantial])
    moved = sum(b != a for b, a in zip(before, after, strict=True))
    old_ids, new_ids = set(previous.values()), set(current.values())
    return {
        "tracks_compared": len(common),
        "tracks_moved": moved,
        "share_moved": round(moved / len(common), 4) if common else 0.0,
        "ari": round(float(adjusted_rand_score(before, after)), 4) if common else None,
        "born": sorted(new_ids - old_ids),
        "died": sorted(old_ids - new_ids),
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
