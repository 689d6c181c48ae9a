"""Figures for the evaluation report. Each function writes one PNG and returns its path.
(The UI's own figures are in `musicvae.ui.charts`.)

The pipeline renders these in Airflow workers and test processes that have no display, so the
non-interactive Agg backend is selected before pyplot is imported.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from sklearn.decomposition import PCA  # noqa: E402
from sklearn.manifold import TSNE  # noqa: E402

from musicvae.model.evaluation import LOWER_IS_BETTER, Result, format_cell, table_rows  # noqa: E402

DPI = 110
SIZE = (8, 6)
OTHER_COLOUR = "#b0b0b0"


def save(fig: Figure, path: Path) -> Path:
    """Write and close: a long-running worker must not accumulate open figures."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=DPI, bbox_inches="tight")
    finally:
        plt.close(fig)
    return path


def _top_labels(labels: Sequence[str | None], top: int) -> list[str]:
    counts = Counter(str(t) for t in labels if t is not None)
    return [name for name, _ in counts.most_common(top)]


# ---------------------------------------------------------------------------------------------
# Latent map


def _tsne_2d(x: np.ndarray, seed: int) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if len(x) < 3:  # t-SNE needs perplexity < N; a couple of points just get placed in a row
        return np.column_stack([np.arange(len(x), dtype=np.float64), np.zeros(len(x))])
    if x.shape[1] > 50:
        # The usual t-SNE preprocessing: neighbour distances become cheaper and less noisy.
        x = PCA(n_components=min(50, len(x)), random_state=seed).fit_transform(x)
    perplexity = min(30.0, (len(x) - 1) / 3)
    tsne = TSNE(n_components=2, init="pca", perplexity=perplexity, random_state=seed)
    return tsne.fit_transform(x)


def latent_map(
    x: np.ndarray,
    labels: Sequence[str | None],
    path: Path,
    top: int = 10,
    seed: int = 0,
    title: str = "",
) -> Path:
    """t-SNE of the latent means: the `top` most frequent labels in colour, the rest grey."""
    if len(x) != len(labels):
        raise ValueError(f"x has {len(x)} rows but there are {len(labels)} labels")
    xy = _tsne_2d(x, seed)
    names = _top_labels(labels, top)
    text = np.array(["" if t is None else str(t) for t in labels], dtype=object)
    fig, ax = plt.subplots(figsize=SIZE)
    rest = ~np.isin(text, names)
    # Grey first, so the coloured labels are drawn on top of it.
    ax.scatter(
        *xy[rest].T,
        s=6,
        c=OTHER_COLOUR,
        alpha=0.6,
        linewidths=0,
        label=f"other / unlabelled ({int(rest.sum())})",
    )
    cmap = plt.get_cmap("tab10" if len(names) <= 10 else "tab20")
    for i, name in enumerate(names):
        rows = text == name
        ax.scatter(
            *xy[rows].T,
            s=14,
            color=cmap(i % cmap.N),
            alpha=0.85,
            linewidths=0,
            label=f"{name} ({int(rows.sum())})",
        )
    ax.set_title(title or f"Latent space (t-SNE), {len(x)} tracks, top {len(names)} labels")
    ax.set_xlabel("t-SNE 1")
    ax.set_ylabel("t-SNE 2")
    ax.legend(
        loc="center left",
        bbox_to_anchor=(1.01, 0.5),
        fontsize=8,
        markerscale=1.5,
        frameon=False,
        title="label (tracks)",
    )
    return save(fig, path)


# ---------------------------------------------------------------------------------------------
# Contingency heatmap


def _contingency(truth, predicted, top: int):
    """Counts [top labels x clusters], clusters ordered so each label's clusters sit together."""
    names = _top_labels(truth, top)
    predicted = np.asarray(predicted)
    clusters = np.unique(predicted)
    text = np.array(["" if t is None else str(t) for t in truth], dtype=object)
    counts = np.array(
        [[np.sum((text == n) & (predicted == c)) for c in clusters] for n in names], dtype=int
    ).reshape(len(names), len(clusters))
    if counts.size:
        # A near-diagonal layout: clusters sorted by the label they hold most of, then by size.
        # HDBSCAN noise is not a cluster of any label: it goes last rather than mid-diagonal.
        order = np.lexsort((-counts.sum(axis=0), counts.argmax(axis=0), clusters == -1))
        clusters, counts = clusters[order], counts[:, order]
    return names, clusters, counts


def contingency_heatmap(
    truth: Sequence[str | None], predicted: np.ndarray, path: Path, top: int = 15, title: str = ""
) -> Path:
    """Rows: the `top` most frequent true labels; columns: clusters (-1 is HDBSCAN noise);
    cells: counts, coloured by the share of the row so small labels are as legible as big ones."""
    if len(truth) != len(predicted):
        raise ValueError(f"{len(truth)} labels but {len(predicted)} cluster assignments")
    names, clusters, counts = _contingency(truth, predicted, top)
    share = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    width = min(24.0, max(SIZE[0], 2.5 + 0.35 * len(clusters)))
    height = min(16.0, max(SIZE[1], 1.5 + 0.35 * len(names)))
    fig, ax = plt.subplots(figsize=(width, height))
    image = ax.imshow(share, aspect="auto", cmap="Blues", vmin=0, vmax=1)
    font = 8 if len(clusters) <= 30 else 6
    for (i, j), n in np.ndenumerate(counts):
        if n:
            colour = "white" if share[i, j] > 0.55 else "black"
            ax.text(j, i, str(n), ha="center", va="center", fontsize=font, color=colour)
    ax.set_xticks(
        range(len(clusters)),
        ["noise" if c == -1 else str(c) for c in clusters],
        fontsize=font,
        rotation=90 if len(clusters) > 30 else 0,
    )
    ax.set_yticks(range(len(names)), names, fontsize=8)
    ax.set_xlabel("cluster")
    ax.set_ylabel("true label")
    ax.set_title(title or f"Cluster membership of the {len(names)} most frequent labels")
    fig.colorbar(image, ax=ax, fraction=0.03, pad=0.02, label="share of the label's tracks")
    return save(fig, path)


# ---------------------------------------------------------------------------------------------
# Reconstructions


LOG_MEL_AXES = ("frame", "mel band", "log-mel", "Log-mel spectrograms")  # x, y, colour, what


def reconstructions(
    originals: np.ndarray,
    recons: np.ndarray,
    path: Path,
    titles: Sequence[str] | None = None,
    axes_names: tuple[str, str, str, str] = LOG_MEL_AXES,
) -> Path:
    """k log-mel pairs [k, n_mels, T]: original above reconstruction, one colour scale per pair
    so a washed-out reconstruction looks washed out rather than rescaled to full contrast.
    `axes_names` (x, y, colour, what) names other images: a front end's patch features."""
    x_name, y_name, colour_name, what = axes_names
    originals, recons = np.asarray(originals, dtype=np.float32), np.asarray(recons, np.float32)
    if originals.shape != recons.shape or originals.ndim != 3 or len(originals) == 0:
        raise ValueError(
            f"need matching non-empty [k, n_mels, T]: {originals.shape} {recons.shape}"
        )
    if titles is not None and len(titles) != len(originals):
        raise ValueError(f"{len(titles)} titles for {len(originals)} pairs")
    k = len(originals)
    fig, axes = plt.subplots(
        2, k, figsize=(max(SIZE[0], 3.2 * k), SIZE[1]), squeeze=False, layout="constrained"
    )
    for j in range(k):
        vmin = float(min(originals[j].min(), recons[j].min()))
        vmax = float(max(originals[j].max(), recons[j].max()))
        for i, (img, kind) in enumerate(
            ((originals[j], "original"), (recons[j], "reconstruction"))
        ):
            ax = axes[i, j]
            shown = ax.imshow(
                img, origin="lower", aspect="auto", cmap="magma", vmin=vmin, vmax=vmax
            )
            name = titles[j] if titles is not None else f"track {j + 1}"
            ax.set_title(f"{name}\n{kind}" if i == 0 else kind, fontsize=9)
            if i == 1:
                ax.set_xlabel(x_name, fontsize=8)
            ax.tick_params(labelsize=7)
            if j == 0:
                ax.set_ylabel(y_name, fontsize=8)
        bar = fig.colorbar(shown, ax=axes[:, j].tolist(), fraction=0.05, pad=0.02)
        bar.set_label(colour_name, fontsize=8)
        bar.ax.tick_params(labelsize=7)
    fig.suptitle(f"{what}: original (top) vs reconstruction (bottom)")
    return save(fig, path)


# ---------------------------------------------------------------------------------------------
# Results table


def _best(cells: dict, rows, metric: str) -> float:
    values = [cells[(*row, metric)].mean for row in rows if (*row, metric) in cells]
    values = [v for v in values if math.isfinite(v)]
    if not values:
        return math.nan
    return min(values) if metric in LOWER_IS_BETTER else max(values)


def results_table_image(
    results: list[Result],
    path: Path,
    labels: str = "genre",
    metrics: Sequence[str] = ("nmi", "ami", "ari", "purity"),
) -> Path:
    """The results for one label set as a table image, mean ± sd, best of each column in bold
    (lowest for Davies-Bouldin, highest for everything else)."""
    rows, cells = table_rows(results, labels, metrics)
    text = [
        [rep, method]
        + [
            format_cell(c.mean, c.sd, m) if (c := cells.get((rep, method, m))) else "n/a"
            for m in metrics
        ]
        for rep, method in rows
    ]
    height = 0.8 + 0.35 * (len(rows) + 1)
    fig, ax = plt.subplots(figsize=(max(SIZE[0], 3.2 + 1.6 * len(metrics)), height))
    ax.axis("off")
    header = ["representation", "method", *(_metric_header(m) for m in metrics)]
    if not text:
        ax.text(0.5, 0.5, f"no results for {labels!r} labels", ha="center", va="center")
    else:
        table = ax.table(cellText=text, colLabels=header, cellLoc="center", bbox=[0, 0, 1, 1])
        _style_table(table, rows, cells, metrics)
    n_seeds = max((r.n for r in cells.values()), default=0)
    ax.set_title(f"Clustering vs {labels} labels (mean ± sd over up to {n_seeds} seeds)")
    return save(fig, path)


def _metric_header(metric: str) -> str:
    arrow = "↓" if metric in LOWER_IS_BETTER else "↑"
    return f"{metric.replace('_', ' ')} {arrow}"


def _style_table(table, rows, cells, metrics) -> None:
    table.auto_set_font_size(False)
    table.set_fontsize(9)
    table.auto_set_column_width(list(range(2 + len(metrics))))
    for (i, _), cell in table.get_celld().items():
        if i == 0:
            cell.set_text_props(weight="bold")
            cell.set_facecolor("#e8e8e8")
    for j, metric in enumerate(metrics, start=2):
        best = _best(cells, rows, metric)
        for i, row in enumerate(rows, start=1):
            result = cells.get((*row, metric))
            if result is not None and result.mean == best:
                table[i, j].set_text_props(weight="bold")


# ---------------------------------------------------------------------------------------------
# Training curves


def training_curves(history: list[dict], path: Path) -> Path:
    """Train and validation loss per epoch, with the KL weight beta on a second axis."""
    fig, ax = plt.subplots(figsize=SIZE)
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.set_title("Training curves")
    if not history:
        ax.text(0.5, 0.5, "no training history", ha="center", va="center", transform=ax.transAxes)
        return save(fig, path)
    epochs = [h.get("epoch", i + 1) for i, h in enumerate(history)]
    lines = []
    for key, style in (("train_loss", "-o"), ("val_loss", "-s")):
        values = [h.get(key, math.nan) for h in history]
        lines += ax.plot(epochs, values, style, markersize=3, label=key.replace("_", " "))
    if _spans_decades(ax):
        # Early epochs of a VAE can sit orders of magnitude above the plateau.
        ax.set_yscale("log")
    ax.grid(alpha=0.3)
    if any("beta" in h for h in history):
        beta_ax = ax.twinx()
        betas = [h.get("beta", math.nan) for h in history]
        lines += beta_ax.plot(epochs, betas, "--", color="tab:green", label="beta (KL weight)")
        beta_ax.set_ylabel("beta")
        beta_ax.set_ylim(bottom=0)
    # Losses fall towards the bottom and beta climbs to the top: the middle right stays clear.
    ax.legend(lines, [line.get_label() for line in lines], loc="center right")
    return save(fig, path)


def _spans_decades(ax) -> bool:
    values = np.concatenate([line.get_ydata() for line in ax.get_lines()]).astype(np.float64)
    values = values[np.isfinite(values)]
    return values.size > 0 and values.min() > 0 and values.max() / values.min() > 20
