"""Matplotlib figures written to PNG files (Agg backend: no display needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torchvision.transforms.v2.functional import resize

from mlcls.errors import DataError
from mlcls.utils.fileio import atomic_path


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: str | Path, dpi: int = 100) -> None:
    """Save a matplotlib figure atomically (format from the extension) and close it."""
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=dpi)
    finally:
        _plt().close(fig)


def bar_chart(
    names: Sequence[str], values: Sequence[float], path: str | Path, title: str, ylabel: str, log: bool = False, labels: bool = False
) -> None:
    """Bars in the given order. ``log``: a symlog axis that starts at 0 (a bar of 13 next to one of
    10,000 stays visible, and no bar starts below the axis); ``labels``: the value on each bar (up to 60 bars)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(max(6, 0.35 * len(names) + 2), 4))
    bars = ax.bar(range(len(names)), values, color="#3b75af")
    ax.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=8)
    ax.set_title(title)
    ax.set_ylabel(ylabel)
    if log:
        ax.set_yscale("symlog", linthresh=1)
        ax.set_ylim(bottom=0)
    if labels and len(names) <= 60:
        ax.bar_label(bars, labels=[f"{v:g}" for v in values], fontsize=7, padding=2)
    fig.tight_layout()
    save_figure(fig, path)


def heatmap(matrix: np.ndarray, names: Sequence[str], path: str | Path, title: str, off_diagonal: bool = False) -> None:
    """A class x class matrix. ``off_diagonal``: the colour scale ignores the diagonal (shown
    hatched grey), which would otherwise swamp it; values are printed in the cells up to 30 classes."""
    plt = _plt()
    size = max(5, 0.3 * len(names) + 2) if len(names) > 30 else max(6, 0.45 * len(names) + 3)
    fig, ax = plt.subplots(figsize=(size, size))
    shown = np.asarray(matrix, dtype=float).copy()
    if off_diagonal and len(shown):
        np.fill_diagonal(shown, np.nan)
    cmap = plt.get_cmap("viridis").copy()
    cmap.set_bad("#dddddd")
    im = ax.imshow(np.ma.masked_invalid(shown), cmap=cmap)
    ax.set_xticks(range(len(names)), names, rotation=90, fontsize=7)
    ax.set_yticks(range(len(names)), names, fontsize=7)
    if len(names) <= 30:
        top = np.nanmax(shown) if np.isfinite(shown).any() else 0
        for i in range(len(names)):
            for j in range(len(names)):
                v = matrix[i][j]
                colour = "black" if (np.isnan(shown[i, j]) or shown[i, j] > 0.6 * top) else "white"
                ax.text(j, i, f"{v:g}", ha="center", va="center", fontsize=6, color=colour)
    ax.set_title(title)
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    save_figure(fig, path)


def prediction_grid(
    images: Sequence[np.ndarray],
    true_labels: Sequence[Sequence[str]],
    pred_labels: Sequence[Sequence[str]],
    overlays: Sequence[np.ndarray | None] | None = None,
    ncols: int = 8,
    title: str = "",
    captions: Sequence[str] | None = None,
) -> np.ndarray:
    """Images with their labels as an RGB array [H, W, 3] (uint8); ``captions``: a line above each.

    Under each image: hits (true and predicted) in green, misses (true, not predicted) in orange
    with a ``-``, false alarms (predicted, not true) in red with a ``+``. ``overlays``: optional
    heat maps [h, w] in [0, 1] drawn over the matching image (Grad-CAM).
    """
    plt = _plt()
    n = len(images)
    ncols = max(1, min(ncols, n))
    nrows = -(-n // ncols)
    max_lines = max([len(set(t) | set(p)) for t, p in zip(true_labels, pred_labels)] + [1])
    img_in, line_in, top_in = 1.8, 0.15, 0.45  # inches: image cell, one label line, title band
    text_in = line_in * max_lines + 0.1
    fig_h = top_in + nrows * (img_in + text_in)
    fig = plt.figure(figsize=(1.9 * ncols, fig_h))
    cmap = plt.get_cmap("jet")
    for k in range(n):
        r, c = divmod(k, ncols)
        top = 1 - (top_in + r * (img_in + text_in)) / fig_h
        ax = fig.add_axes([c / ncols + 0.005, top - img_in / fig_h, 1 / ncols - 0.01, img_in / fig_h])
        ax.axis("off")
        img = images[k]
        ax.imshow(img)
        if captions is not None:
            ax.set_title(captions[k], fontsize=6, pad=2)
        if overlays is not None and overlays[k] is not None:
            heat = np.clip(np.asarray(overlays[k], dtype=np.float32), 0, 1)
            rgba = cmap(heat)
            rgba[..., 3] = 0.6 * heat  # transparent where the map is 0
            ax.imshow(rgba, extent=(-0.5, img.shape[1] - 0.5, img.shape[0] - 0.5, -0.5))
        true, pred = set(true_labels[k]), set(pred_labels[k])
        entries = [(name, "#1a9641") for name in sorted(true & pred)]
        entries += [(f"-{name}", "#e66101") for name in sorted(true - pred)]
        entries += [(f"+{name}", "#d7191c") for name in sorted(pred - true)]
        for j, (text, color) in enumerate(entries):
            ax.annotate(text, (0, 0), xycoords="axes fraction", xytext=(2, -3 - 10.5 * j), textcoords="offset points",
                        color=color, fontsize=7, va="top")  # fmt: skip
    legend = "green: hit   -orange: missed   +red: false alarm"
    fig.suptitle(f"{title}   ({legend})" if title else legend, fontsize=9, y=1 - 0.12 / fig_h)
    fig.canvas.draw()
    out = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
    plt.close(fig)
    return out


def scored_grid(
    images: Sequence[torch.Tensor],
    targets: torch.Tensor,
    scores: np.ndarray,
    thr: float | Sequence[float],
    classes: Sequence[str],
    size: int = 96,
    overlays: Sequence[np.ndarray | None] | None = None,
    title: str = "",
    ncols: int = 8,
) -> np.ndarray:
    """:func:`prediction_grid` from decoded images, their targets and scores.

    Args:
        images: K decoded images, uint8 [3, H, W] (e.g. :func:`mlcls.datasets.image_io.samples_for_display`).
        targets: [K, C], 1 / 0 / -1 (only 1 is drawn as a true label).
        scores: their probabilities [K, C].
        thr: scalar or per-class [C] thresholds (``score >= thr`` is predicted).
        classes: the C class names.
        size: each image is shown resized to ``size`` x ``size``.
    """
    classes = list(classes)
    thr_arr = np.broadcast_to(np.asarray(thr, dtype=np.float64), (len(classes),))
    shown = [resize(img, [size, size], antialias=True).permute(1, 2, 0).numpy() for img in images]
    true = [[classes[c] for c in torch.nonzero(t > 0.5).flatten().tolist()] for t in targets]
    pred = [[classes[c] for c in np.nonzero(np.asarray(row) >= thr_arr)[0].tolist()] for row in scores]
    return prediction_grid(shown, true, pred, overlays=overlays, ncols=ncols, title=title)


def _series(records: list[dict], key: str) -> list[tuple[float, float]]:
    """``(x, value)`` points for ``key``; a resumed run's repeated points keep the later value."""
    points: dict[float, float] = {}
    for r in records:
        if key in r and r.get("mode") in ("train", "val"):
            x = r["iter"] if r["mode"] == "train" else r["epoch"]
            points[x] = float(r[key])
    return sorted(points.items())


def plot_curves(logs: dict[str, list[dict]], keys: Sequence[str], out: str | Path) -> None:
    """One panel per logged key, one line per run (``{name: scalars.jsonl records}``); training keys
    against the iteration, validation keys against the epoch.

    Raises:
        DataError: a key is in none of the logs (the message lists the logged keys).
    """
    plt = _plt()
    fig, axes = plt.subplots(1, len(keys), figsize=(5.5 * len(keys), 4), squeeze=False)
    for ax, key in zip(axes[0], keys):
        found = False
        for name, records in logs.items():
            pts = _series(records, key)
            if pts:
                found = True
                xs, ys = zip(*pts)
                ax.plot(xs, ys, label=name, marker="." if len(pts) < 50 else None)
        if not found:
            available = sorted({k for lg in logs.values() for r in lg for k in r} - {"mode", "epoch", "iter"})
            raise DataError(f"--keys: '{key}' is in none of the logs (logged keys: {', '.join(available)})")
        is_val = any(r.get("mode") == "val" and key in r for lg in logs.values() for r in lg)
        ax.set_xlabel("epoch" if is_val else "iteration")
        ax.set_title(key)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, out)
