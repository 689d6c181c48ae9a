"""Figures the UI pages serve: how tracks moved between two recluster runs, a cluster on the
map of the catalogue, and feature drift over validation runs."""

from __future__ import annotations

import tempfile
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from musicvae.model.plots import OTHER_COLOUR, SIZE, plt, save


def png_bytes(draw: Callable[..., Path], *args, **kwargs) -> bytes:
    """What a figure function draws, as PNG bytes: for pages that serve a figure, not keep it."""
    with tempfile.TemporaryDirectory() as tmp:
        return draw(*args, path=Path(tmp) / "figure.png", **kwargs).read_bytes()


def cluster_flows(
    flows: Sequence[Sequence[int]], path: Path, title: str = "Tracks between two runs"
) -> Path:
    """An alluvial plot: the previous run's clusters stacked on the left, the current run's on
    the right, and a band per flow of tracks (`[previous id, current id, tracks]`) whose width
    is the number of tracks. Tracks that stayed are grey bands; moved ones take their colour."""
    before, after = Counter(), Counter()
    for p, c, n in flows:
        before[p] += n
        after[c] += n
    total = sum(before.values()) or 1
    gap = 0.02 * total
    tops = {side: _stack(sizes, gap) for side, sizes in (("l", before), ("r", after))}
    colours = plt.get_cmap("tab20")
    fig, ax = plt.subplots(figsize=SIZE)
    out_l, in_r = dict(tops["l"]), dict(tops["r"])  # where each cluster's next band starts
    x = np.linspace(0, 1, 50)
    ease = 3 * x**2 - 2 * x**3  # smooth from the left column's height to the right one's
    for p, c, n in sorted(flows, key=lambda f: (f[0], f[1])):
        y0, y1 = out_l[p], in_r[c]
        out_l[p] += n
        in_r[c] += n
        low = y0 + (y1 - y0) * ease
        colour = OTHER_COLOUR if p == c else colours(c % 20)
        ax.fill_between(x, low, low + n, color=colour, alpha=0.6, linewidth=0)
    for side, xpos in (("l", -0.04), ("r", 1.0)):
        sizes = before if side == "l" else after
        for cluster, top in tops[side].items():
            ax.add_patch(
                plt.Rectangle((xpos, top), 0.04, sizes[cluster], color=colours(cluster % 20))
            )
            align = "right" if side == "l" else "left"
            offset = -0.05 if side == "l" else 1.05
            ax.text(
                offset,
                top + sizes[cluster] / 2,
                f"{cluster} ({sizes[cluster]})",
                ha=align,
                va="center",
                fontsize=8,
            )
    ax.set_xlim(-0.25, 1.25)
    height = max(sum(s.values()) + gap * len(s) for s in (before, after))
    ax.set_ylim(height, -gap)  # the first cluster on top
    ax.set_xticks([0, 1], ["previous run", "this run"])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)
    ax.set_title(title)
    return save(fig, path)


def _stack(sizes: Counter, gap: float) -> dict[int, float]:
    """Top edge of each cluster's block, clusters in id order, a gap between blocks."""
    tops, y = {}, 0.0
    for cluster in sorted(sizes):
        tops[cluster] = y
        y += sizes[cluster] + gap
    return tops


def cluster_map(
    xy: np.ndarray,
    labels: np.ndarray,
    highlight: int,
    medoids: np.ndarray,
    path: Path,
    title: str = "",
) -> Path:
    """Every track as a grey point, one cluster's in colour, its medoids as stars, and each
    cluster's id at the mean of its points."""
    fig, ax = plt.subplots(figsize=SIZE)
    mine = labels == highlight
    ax.scatter(*xy[~mine].T, s=6, color=OTHER_COLOUR, alpha=0.5, linewidths=0)
    ax.scatter(*xy[mine].T, s=12, color="tab:blue", label=f"cluster {highlight}")
    ax.scatter(*xy[medoids].T, s=120, marker="*", color="tab:orange", label="nearest its centre")
    for c in np.unique(labels):
        x, y = xy[labels == c].mean(axis=0)
        ax.annotate(str(c), (x, y), ha="center", va="center", fontsize=9, weight="bold")
    ax.set_xlabel("PC 1")
    ax.set_ylabel("PC 2")
    ax.legend(loc="best", fontsize=8)
    ax.set_title(title)
    return save(fig, path)


def drift_trend(
    runs: Sequence[str],  # a label per run
    psi: dict[str, Sequence[float | None]],
    ood_share: Sequence[float | None],
    limits: tuple[float, float],
    path: Path,
) -> Path:
    """Feature drift over validation runs (oldest first): each feature's PSI against the
    champion's training data above, the share of tracks out of distribution below, each with
    its limit (`limits`: max PSI, max OOD share) as a dashed line."""
    fig, (top, bottom) = plt.subplots(2, 1, figsize=SIZE, sharex=True)
    x = np.arange(len(runs))
    for name, values in psi.items():
        top.plot(x, [np.nan if v is None else v for v in values], marker="o", label=name)
    shares = [np.nan if v is None else v for v in ood_share]
    bottom.bar(x, shares, color=["#d62728" if s > limits[1] else "#1f77b4" for s in shares])
    for ax, limit, label in ((top, limits[0], "PSI"), (bottom, limits[1], "out of distribution")):
        ax.axhline(limit, color="black", linestyle="--", linewidth=1)
        ax.set_ylabel(label)
    top.set_title("New data against the champion's training data, per validation run")
    top.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
    bottom.set_xticks(x, runs, rotation=30, ha="right", fontsize=7)
    return save(fig, path)
