"""One config, several seeds: mean and spread of the metrics, so a difference can be judged.

On a small, long-tailed set a class with 6 positives moves mAP by about a point when one pair of
scores swaps: a single run's difference between two losses says little until it is compared with
the spread between seeds of the same config.
"""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import numpy as np

from mlcls.errors import DataError
from mlcls.utils.checkpoint import checkpoint_meta
from mlcls.utils.misc import write_json

SUMMARY_METRICS = ("mAP", "mAUROC", "CF1", "OF1", "F1_macro")


def summarize_seeds(results: dict[int, dict], classes: list[str]) -> dict:
    """``{seed: validation metrics}`` -> mean / sample std / values per metric and per-class AP."""
    seeds = sorted(results)
    out = {"seeds": seeds, "metrics": {}, "per_class": []}
    for key in SUMMARY_METRICS:
        values = [float(results[s][key]) for s in seeds if key in results[s]]
        if values:
            out["metrics"][key] = {"mean": float(np.mean(values)), "std": _std(values), "values": values}
    for c, name in enumerate(classes):
        aps = [results[s]["AP"][c] for s in seeds]
        aps = [float(a) for a in aps if a is not None and not math.isnan(a)]
        out["per_class"].append({
            "class": name, "positives": int(results[seeds[0]]["num_pos"][c]),
            "AP_mean": float(np.mean(aps)) if aps else None, "AP_std": _std(aps) if aps else None,
        })  # fmt: skip
    return out


def _std(values: list[float]) -> float:
    return float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


def format_summary(summary: dict) -> str:
    n = len(summary["seeds"])
    lines = [f"{n} seeds ({', '.join(map(str, summary['seeds']))}): mean ± std (sample)"]
    lines.append("  ".join(f"{k} {v['mean']:.2f} ± {v['std']:.2f}" for k, v in summary["metrics"].items()))
    width = max(5, *(len(r["class"]) for r in summary["per_class"]))
    lines.append(f"{'class':<{width}}  {'pos':>5}  {'AP mean':>8}  {'AP std':>7}")
    for r in sorted(summary["per_class"], key=lambda r: -r["positives"]):
        ap = "    n/a" if r["AP_mean"] is None else f"{r['AP_mean']:8.2f}  {r['AP_std']:7.2f}"
        lines.append(f"{r['class']:<{width}}  {r['positives']:>5}  {ap}")
    lines.append("classes with few positives have a large AP std: differences there are noise until they exceed it")
    return "\n".join(lines)


def compare_summaries(a: dict, b: dict, names: tuple[str, str] = ("A", "B")) -> list[dict]:
    """Per metric: the difference of means and whether it exceeds the seed spread.

    The spread is the standard error of the difference, ``sqrt(std_a^2 / n_a + std_b^2 / n_b)``;
    a difference larger than twice that is called beyond the seed spread (roughly a 95 % level
    for a handful of seeds, no stronger claim).
    """
    rows = []
    for key in SUMMARY_METRICS:
        if key not in a["metrics"] or key not in b["metrics"]:
            continue
        ma, mb = a["metrics"][key], b["metrics"][key]
        se = math.sqrt(ma["std"] ** 2 / len(ma["values"]) + mb["std"] ** 2 / len(mb["values"]))
        diff = mb["mean"] - ma["mean"]
        rows.append({"metric": key, names[0]: ma["mean"], names[1]: mb["mean"], "diff": diff, "spread": se,
                     "beyond_spread": bool(se > 0 and abs(diff) > 2 * se)})  # fmt: skip
    return rows


def run_seeds(cfg: dict, seeds: list[int], train) -> dict:
    """Train ``cfg`` once per seed in ``<work_dir>/seed_<k>`` (one after the other) and summarise.

    Args:
        train: ``train_model``-like callable taking a config and returning the validation metrics.
    """
    base = Path(cfg["work_dir"])
    results, classes = {}, None
    for seed in seeds:
        run = copy.deepcopy(cfg)
        run["seed"], run["work_dir"] = int(seed), str(base / f"seed_{seed}")
        results[seed] = train(run)
        classes = classes or _classes(Path(run["work_dir"]))
    summary = summarize_seeds(results, classes)
    write_json(summary, base / "seeds_summary.json")
    (base / "seeds_summary.txt").write_text(format_summary(summary) + "\n")
    return summary


def _classes(work_dir: Path) -> list[str]:
    return list(checkpoint_meta(work_dir / "latest.pth")["classes"])


def compare_runs(a: Path, b: Path) -> list[str]:
    """Two ``--seeds`` runs side by side: per metric the two means, their difference, the seed spread and a verdict."""
    summaries = []
    for d in (a, b):
        path = d / "seeds_summary.json" if d.is_dir() else d
        if not path.is_file():
            raise DataError(f"{path}: not found (run tools/train.py CONFIG --seeds 0 1 2 first)")
        summaries.append(json.loads(path.read_text()))
    rows = compare_summaries(*summaries, names=(a.name, b.name))
    lines = [f"{'metric':<9} {a.name:>12} {b.name:>12} {'diff':>8} {'spread':>8}  verdict"]
    for r in rows:
        verdict = "beyond the seed spread" if r["beyond_spread"] else "within the seed spread: not a difference"
        lines.append(f"{r['metric']:<9} {r[a.name]:12.2f} {r[b.name]:12.2f} {r['diff']:+8.2f} {r['spread']:8.2f}  {verdict}")
    return lines
