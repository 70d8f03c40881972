"""Procedural multi-label demo data: coloured shapes on noisy backgrounds, written as PNG + CSV.

Needs no download and is deterministic from its seed. Classes follow a long-tailed frequency
(the rarest at a few percent) and an image holds 0-4 shapes. Colour is a partial cue: each class
is drawn in one of 3 palette colours and each colour is shared by 3 classes, so colour narrows a
shape down to three candidates and the shape itself has to decide (a from-scratch CNN learns
colour in a few hundred steps and shape much more slowly; the mix keeps the demo fast on a CPU
while still needing shape). The files use the same CSV format users write
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

from mlcls.utils.fileio import atomic_open

# Ordered by frequency. Shapes that are hard to tell apart at 48 px (hexagon/circle, diamond/square)
# are frequent; the rare classes are distinct shapes, so rarity, not resolution, is their difficulty.
SHAPES = ("circle", "square", "hexagon", "triangle", "diamond", "star", "ring", "cross", "crescent", "bar")
# Probability that an image contains each class: long-tailed, rarest at 3 %.
FREQUENCIES = (0.40, 0.32, 0.25, 0.19, 0.14, 0.10, 0.07, 0.05, 0.04, 0.03)
PALETTE = (
    (230, 60, 50), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48),
    (145, 30, 180), (70, 240, 240), (240, 50, 230), (250, 250, 250), (20, 20, 20),
)  # fmt: skip
# Palette indices per class: class c uses colours c, c+3 and c+7 (mod 10).
CLASS_COLOURS = tuple((c % 10, (c + 3) % 10, (c + 7) % 10) for c in range(len(SHAPES)))
SPLITS = {"train": 3000, "val": 600, "test": 600}
GENERATOR_VERSION = 4


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


def render_image(rng: np.random.Generator, objects: list[tuple[str, tuple]], size: int, scale: int = 2) -> Image.Image:
    """An RGB image with one shape per ``(shape name, colour)`` in ``objects`` on a noisy background."""
    big = size * scale
    base = rng.integers(40, 200, size=3)
    grad = np.linspace(-30, 30, big)[None, :, None] * rng.uniform(-1, 1, size=(1, 1, 3))
    bg = np.clip(base[None, None, :] + grad + rng.normal(0, 18, size=(big, big, 3)), 0, 255).astype(np.uint8)
    img = Image.fromarray(bg, "RGB")
    placed: list[tuple[float, float, float]] = []
    for name, colour in objects:
        for _ in range(30):  # rejection sampling keeps shapes mostly apart
            r = rng.uniform(0.13, 0.21) * big
            cx, cy = rng.uniform(r, big - r, size=2)
            if all(math.hypot(cx - x, cy - y) > (r + q) * 0.85 for x, y, q in placed):
                break
        placed.append((cx, cy, r))
        mask = Image.new("L", (big, big), 0)
        _draw_shape(ImageDraw.Draw(mask), name, cx, cy, r, rng.uniform(0, 2 * math.pi))
        if np.abs(np.array(colour) - base).sum() < 120:  # keep a visible contrast with the background
            colour = tuple(255 - c for c in colour)
        img.paste(Image.new("RGB", (big, big), tuple(colour)), (0, 0), mask)
    return img.resize((size, size), Image.Resampling.BILINEAR)


def demo_objects(rng: np.random.Generator, labels: list[int]) -> list[tuple[str, tuple]]:
    """Shapes for the demo set: class c drawn in one of its three palette colours."""
    return [(SHAPES[c], PALETTE[CLASS_COLOURS[c][rng.integers(3)]]) for c in labels]


def sample_labels(rng: np.random.Generator, freqs=FREQUENCIES, max_objects: int = 4) -> list[int]:
    labels = [c for c, p in enumerate(freqs) if rng.random() < p]
    if len(labels) > max_objects:
        labels = sorted(rng.choice(labels, size=max_objects, replace=False).tolist())
    return labels


def claim_generated_set(root: Path, manifest: dict, force: bool) -> bool:
    """False when ``root`` already holds the generated set ``manifest`` describes (nothing to do);
    else True, with the old manifest removed so that a set cut short is never taken as complete."""
    mpath = root / "manifest.json"
    if not force and mpath.is_file():
        try:
            if json.loads(mpath.read_text()) == manifest:
                return False
        except json.JSONDecodeError:
            pass
    mpath.unlink(missing_ok=True)
    return True


def _write_dataset(root: Path, manifest: dict, classes, splits: dict, make_image, force: bool) -> Path:
    """Write ``classes.txt``, ``{split}.csv`` and the PNGs; ``manifest.json`` last marks completion.

    ``make_image(rng) -> (PIL image, label indices)``. An identical existing set is kept.
    """
    if not claim_generated_set(root, manifest, force):
        return root
    mpath = root / "manifest.json"
    root.mkdir(parents=True, exist_ok=True)
    (root / "classes.txt").write_text("\n".join(classes) + "\n")
    for s_idx, (split, n) in enumerate(splits.items()):
        rng = np.random.default_rng([manifest["seed"], s_idx])
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
        rows = []
        for i in range(n):
            img, labels = make_image(rng)
            rel = f"images/{split}/{i:05d}.png"
            img.save(root / rel, optimize=False, compress_level=1)
            rows.append((rel, " ".join(classes[c] for c in labels)))
        with atomic_open(root / f"{split}.csv", newline="") as f:
            w = csv.writer(f)
            w.writerow(["filename", "labels"])
            w.writerows(rows)
    mpath.write_text(json.dumps(manifest, indent=1))
    return root


def make_shapes_dataset(root: str | os.PathLike, seed: int = 0, size: int = 48, splits: dict | None = None, force: bool = False) -> Path:
    """Write the demo set under ``root`` unless an identical one is already there.

    Layout: ``root/classes.txt``, ``root/{split}.csv`` and ``root/images/{split}/NNNNN.png``.
    """
    splits = dict(splits or SPLITS)
    manifest = {"version": GENERATOR_VERSION, "seed": seed, "size": size, "splits": splits, "classes": list(SHAPES)}

    def make_image(rng):
        labels = sample_labels(rng)
        return render_image(rng, demo_objects(rng, labels), size), labels

    return _write_dataset(Path(root), manifest, SHAPES, splits, make_image, force)


# -- sparse-30: 30 sparse labels (about one positive per image), on images ------------------------------------------------------
SPARSE_COLOURS = {"red": (230, 60, 50), "green": (60, 180, 75), "blue": (0, 130, 200)}
SPARSE_CLASSES = tuple(f"{c}_{s}" for c in SPARSE_COLOURS for s in SHAPES)
DISTRACTOR_COLOURS = ((255, 225, 25), (145, 30, 180), (250, 250, 250), (20, 20, 20))
SPARSE_SPLITS = {"train": 3000, "val": 1000, "test": 1000}


def make_sparse30_dataset(
    root: str | os.PathLike, seed: int = 0, size: int = 32, splits: dict | None = None, draw_prob: float = 0.5, force: bool = False
) -> Path:
    """30 classes (10 shapes x 3 colours), each present with probability 1/30 (about one positive
    label per image), and a positive label's shape drawn only with probability ``draw_prob``: the
    label is there but its visual cue often is not (noisy features, as in the classic 30-sparse-labels example). 0-2 distractor
    shapes in colours no class uses keep images from being empty."""
    splits = dict(splits or SPARSE_SPLITS)
    manifest = {"version": GENERATOR_VERSION, "kind": "sparse30", "seed": seed, "size": size, "splits": splits, "draw_prob": draw_prob}
    colours = list(SPARSE_COLOURS.values())

    def make_image(rng):
        labels = [c for c in range(30) if rng.random() < 1 / 30]
        objects = [(SHAPES[c % 10], colours[c // 10]) for c in labels if rng.random() < draw_prob]
        objects += [(SHAPES[rng.integers(10)], DISTRACTOR_COLOURS[rng.integers(4)]) for _ in range(rng.integers(0, 3))]
        order = rng.permutation(len(objects))
        return render_image(rng, [objects[i] for i in order], size), labels

    return _write_dataset(Path(root), manifest, SPARSE_CLASSES, splits, make_image, force)


def inject_label_noise(
    root: str | Path,
    split: str = "train",
    missing: float = 0.0,
    extra: float = 0.0,
    seed: int = 0,
    single: bool = False,
    unknown: float = 0.0,
    name: str | None = None,
) -> Path:
    """Corrupt a generated set's labels the way annotators do, keeping the truth: each positive is
    dropped with probability ``missing`` (a class the annotator skipped), and ``extra`` x N wrong
    positives are added at random (a careless tick). ``single``: one positive per image is kept,
    drawn at random, the others dropped (single positive labels). ``unknown``: each (image,
    class) entry is left unannotated with this probability (partial annotation, as Open Images'
    unverified classes), written as a ``label_fixes`` file of -1 entries,
    ``{name}_unknown_fixes.csv``. Writes ``{name}.csv`` (default ``{split}_noisy``) beside
    ``{split}.csv`` and ``{name}_noise.csv`` (default ``{split}_noise.csv``:
    ``path,class,true_label,given_label``, one row per changed pair), for label-error benchmarks;
    the clean file is left as it is.

    Returns:
        the noisy CSV's path.
    """
    root = Path(root)
    classes = [ln.strip() for ln in (root / "classes.txt").read_text(encoding="utf-8").splitlines() if ln.strip()]
    lines = (root / f"{split}.csv").read_text(encoding="utf-8").splitlines()
    header, rows = lines[0], [ln.split(",", 1) for ln in lines[1:] if ln.strip()]
    rng = np.random.default_rng([seed, 7919])
    given = [set(labels.split()) for _, labels in rows]
    truth = [set(g) for g in given]
    changed = []
    for i, labels in enumerate(truth):
        keep = sorted(labels)[int(rng.integers(len(labels)))] if single and labels else None
        for cls in sorted(labels):
            if (single and cls != keep) or (not single and rng.random() < missing):
                given[i].discard(cls)
                changed.append((rows[i][0], cls, 1, 0))
    for _ in range(int(round(extra * len(rows)))):
        i, cls = int(rng.integers(len(rows))), classes[int(rng.integers(len(classes)))]
        if cls not in given[i] and cls not in truth[i]:
            given[i].add(cls)
            changed.append((rows[i][0], cls, 0, 1))
    stem = name or f"{split}_noisy"
    out = root / f"{stem}.csv"
    # written whole or not at all: another process may be reading the files of an earlier identical call
    with atomic_open(out, encoding="utf-8") as f:
        f.write("\n".join([header] + [f"{path},{' '.join(sorted(g))}" for (path, _), g in zip(rows, given)]) + "\n")
    noise = root / (f"{name}_noise.csv" if name else f"{split}_noise.csv")
    with atomic_open(noise, encoding="utf-8") as f:
        f.write("path,class,true_label,given_label\n" + "".join(f"{p},{c},{t},{g}\n" for p, c, t, g in changed))
    if unknown > 0:
        hidden = rng.random((len(rows), len(classes))) < unknown
        with atomic_open(root / f"{stem}_unknown_fixes.csv", encoding="utf-8") as f:
            f.write("path,class,label\n" + "".join(f"{rows[i][0]},{classes[c]},-1\n" for i, c in zip(*np.nonzero(hidden))))
    return out
