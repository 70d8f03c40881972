"""Procedural multi-label demo data: coloured shapes on noisy backgrounds, written as PNG + CSV.

Needs no download and is deterministic from its seed. Classes follow a long-tailed frequency
(the rarest at a few percent), an image holds 0-4 shapes, and colours are independent of the class,
so a model has to learn shape, not colour. The files use the same CSV format users write
(``filename,labels``), so the demo exercises the real loading path.
"""

from __future__ import annotations

import csv
import json
import math
import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

SHAPES = ("circle", "square", "triangle", "star", "cross", "ring", "diamond", "hexagon", "crescent", "bar")
# Probability that an image contains each class: long-tailed, rarest at 3 %.
FREQUENCIES = (0.40, 0.32, 0.25, 0.19, 0.14, 0.10, 0.07, 0.05, 0.04, 0.03)
PALETTE = (
    (230, 60, 50), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48),
    (145, 30, 180), (70, 240, 240), (240, 50, 230), (250, 250, 250), (20, 20, 20),
)  # fmt: skip
SPLITS = {"train": 3000, "val": 600, "test": 600}
GENERATOR_VERSION = 1


def _polygon(cx: float, cy: float, r: float, n: int, rot: float, inner: float | None = None) -> list[tuple]:
    pts = []
    steps = n * 2 if inner else n
    for k in range(steps):
        rad = r if (inner is None or k % 2 == 0) else r * inner
        a = rot + 2 * math.pi * k / steps
        pts.append((cx + rad * math.cos(a), cy + rad * math.sin(a)))
    return pts


def _draw_shape(mask: ImageDraw.ImageDraw, name: str, cx: float, cy: float, r: float, rot: float) -> None:
    """Draw one shape in white (255) on an 'L' mask."""
    if name == "circle":
        mask.ellipse([cx - r, cy - r, cx + r, cy + r], fill=255)
    elif name == "ring":
        mask.ellipse([cx - r, cy - r, cx + r, cy + r], fill=255)
        mask.ellipse([cx - r * 0.55, cy - r * 0.55, cx + r * 0.55, cy + r * 0.55], fill=0)
    elif name == "crescent":
        mask.ellipse([cx - r, cy - r, cx + r, cy + r], fill=255)
        dx, dy = r * 0.55 * math.cos(rot), r * 0.55 * math.sin(rot)
        mask.ellipse([cx - r + dx, cy - r + dy, cx + r + dx, cy + r + dy], fill=0)
    elif name == "square":
        mask.polygon(_polygon(cx, cy, r, 4, rot), fill=255)
    elif name == "diamond":
        a, b = r, r * 0.5
        pts = [(0, -a), (b, 0), (0, a), (-b, 0)]
        c, s = math.cos(rot), math.sin(rot)
        mask.polygon([(cx + x * c - y * s, cy + x * s + y * c) for x, y in pts], fill=255)
    elif name == "triangle":
        mask.polygon(_polygon(cx, cy, r, 3, rot), fill=255)
    elif name == "hexagon":
        mask.polygon(_polygon(cx, cy, r, 6, rot), fill=255)
    elif name == "star":
        mask.polygon(_polygon(cx, cy, r, 5, rot, inner=0.42), fill=255)
    elif name == "cross":
        w = r * 0.33
        pts = [(-w, -r), (w, -r), (w, -w), (r, -w), (r, w), (w, w), (w, r), (-w, r), (-w, w), (-r, w), (-r, -w), (-w, -w)]
        c, s = math.cos(rot), math.sin(rot)
        mask.polygon([(cx + x * c - y * s, cy + x * s + y * c) for x, y in pts], fill=255)
    elif name == "bar":
        pts = [(-r, -r * 0.22), (r, -r * 0.22), (r, r * 0.22), (-r, r * 0.22)]
        c, s = math.cos(rot), math.sin(rot)
        mask.polygon([(cx + x * c - y * s, cy + x * s + y * c) for x, y in pts], fill=255)
    else:  # pragma: no cover - SHAPES is closed
        raise ValueError(name)


def render_image(rng: np.random.Generator, labels: list[int], size: int, classes=SHAPES, scale: int = 2) -> Image.Image:
    """An RGB image with one shape per entry of ``labels`` on a noisy background."""
    big = size * scale
    base = rng.integers(40, 200, size=3)
    grad = np.linspace(-30, 30, big)[None, :, None] * rng.uniform(-1, 1, size=(1, 1, 3))
    bg = np.clip(base[None, None, :] + grad + rng.normal(0, 18, size=(big, big, 3)), 0, 255).astype(np.uint8)
    img = Image.fromarray(bg, "RGB")
    placed: list[tuple[float, float, float]] = []
    for cid in labels:
        for _ in range(30):  # rejection sampling keeps shapes mostly apart
            r = rng.uniform(0.13, 0.21) * big
            cx, cy = rng.uniform(r, big - r, size=2)
            if all(math.hypot(cx - x, cy - y) > (r + q) * 0.85 for x, y, q in placed):
                break
        placed.append((cx, cy, r))
        mask = Image.new("L", (big, big), 0)
        _draw_shape(ImageDraw.Draw(mask), classes[cid], cx, cy, r, rng.uniform(0, 2 * math.pi))
        colour = PALETTE[rng.integers(len(PALETTE))]
        if np.abs(np.array(colour) - base).sum() < 120:  # keep a visible contrast with the background
            colour = tuple(255 - c for c in colour)
        img.paste(Image.new("RGB", (big, big), colour), (0, 0), mask)
    return img.resize((size, size), Image.Resampling.BILINEAR)


def sample_labels(rng: np.random.Generator, freqs=FREQUENCIES, max_objects: int = 4) -> list[int]:
    labels = [c for c, p in enumerate(freqs) if rng.random() < p]
    if len(labels) > max_objects:
        labels = sorted(rng.choice(labels, size=max_objects, replace=False).tolist())
    return labels


def make_shapes_dataset(root: str | os.PathLike, seed: int = 0, size: int = 64, splits: dict | None = None, force: bool = False) -> Path:
    """Write the demo set under ``root`` unless an identical one is already there.

    Layout: ``root/classes.txt``, ``root/{split}.csv`` and ``root/images/{split}/NNNNN.png``.
    A ``manifest.json`` written last marks a complete set; an interrupted run is redone.
    """
    root = Path(root)
    splits = dict(splits or SPLITS)
    manifest = {"version": GENERATOR_VERSION, "seed": seed, "size": size, "splits": splits, "classes": list(SHAPES)}
    mpath = root / "manifest.json"
    if not force and mpath.is_file():
        try:
            if json.loads(mpath.read_text()) == manifest:
                return root
        except json.JSONDecodeError:
            pass
    if mpath.exists():
        mpath.unlink()
    root.mkdir(parents=True, exist_ok=True)
    (root / "classes.txt").write_text("\n".join(SHAPES) + "\n")
    for s_idx, (split, n) in enumerate(splits.items()):
        rng = np.random.default_rng([seed, s_idx])
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
        rows = []
        for i in range(n):
            labels = sample_labels(rng)
            rel = f"images/{split}/{i:05d}.png"
            render_image(rng, labels, size).save(root / rel, optimize=False, compress_level=1)
            rows.append((rel, " ".join(SHAPES[c] for c in labels)))
        tmp = root / f".{split}.csv.tmp"
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["filename", "labels"])
            w.writerows(rows)
        os.replace(tmp, root / f"{split}.csv")
    mpath.write_text(json.dumps(manifest, indent=1))
    return root
