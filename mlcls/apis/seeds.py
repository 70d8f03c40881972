"""One config, several seeds: mean and spread of the metrics, so a difference can be judged.

On a small, long-tailed set a class with 6 positives moves mAP by about a point when one pair of
scores swaps: a single run's difference between two losses says little until it is compared with
the spread between seeds of the same config.
"""

from __future__ import annotations

import copy
import json
import logging
import math
from pathlib import Path

import numpy as np

from mlcls.apis.train import resume_candidates
from mlcls.config import config_sha256
from mlcls.errors import ConfigError, DataError
from mlcls.utils.checkpoint import checkpoint_meta
from mlcls.utils.dist import is_main_process
from mlcls.utils.misc import write_json

logger = logging.getLogger("mlcls")

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


SEED_FILE = "seed_result.json"  # in each seed_<k>: its validation metrics and the config's hash, the mark of a finished seed


def seed_config(cfg: dict, seed: int) -> dict:
    """The config of seed ``seed``'s training, in ``<work_dir>/seed_<seed>``."""
    run = copy.deepcopy(cfg)
    run["seed"], run["work_dir"] = int(seed), str(Path(cfg["work_dir"]) / f"seed_{seed}")
    return run


def run_seeds(cfg: dict, seeds: list[int], train) -> dict:
    """Train ``cfg`` once per seed in ``<work_dir>/seed_<k>`` (one after the other) and summarise.

    The same steps run spread over processes or jobs: :func:`train_seed` per seed anywhere, then
    :func:`merge_seeds`; the outputs are the same files.

    Args:
        train: ``(config, resume) -> validation metrics`` (``train_model`` with the caller's options).
    """
    for seed in seeds:
        train_seed(cfg, seed, train, keep_finished=False)
    return merge_seeds(cfg, seeds)


def train_seed(cfg: dict, seed: int, train, keep_finished: bool = True) -> None:
    """Train seed ``seed`` of ``cfg`` and record its validation metrics (``seed_<k>/seed_result.json``).
    With ``keep_finished`` (a part of many: a worker, or one job of a scheduler's array), a
    seed finished with this config is kept and a stopped one resumes from its latest checkpoint."""
    run = seed_config(cfg, seed)
    wd = Path(run["work_dir"])
    sha = config_sha256(cfg)
    if keep_finished and (wd / SEED_FILE).is_file():
        if _read_result(wd / SEED_FILE).get("config_sha256") == sha:
            logger.info("--seeds: seed %d is finished (%s): kept", seed, wd / SEED_FILE)
            return
        raise ConfigError(f"{wd / SEED_FILE}: seed {seed} was trained with another config: use a new --work-dir, or --overwrite")
    metrics = train(run, keep_finished and bool(resume_candidates(wd)))
    if is_main_process():
        write_json({"seed": int(seed), "config_sha256": sha, "metrics": metrics}, wd / SEED_FILE)


def merge_seeds(cfg: dict, seeds: list[int]) -> dict:
    """Summarise the seeds of ``cfg`` (``seeds_summary.json`` / ``.txt`` in its work dir) after
    checking that each is finished and was trained with ``cfg``."""
    base, sha = Path(cfg["work_dir"]), config_sha256(cfg)
    missing = [s for s in seeds if not (base / f"seed_{s}" / SEED_FILE).is_file()]
    if missing:
        raise ConfigError(f"--merge: {len(missing)} of {len(seeds)} seeds in {base} are not finished (no seed_<k>/{SEED_FILE}): "
                          f"seed {', '.join(map(str, missing))}; run their parts first")  # fmt: skip
    results = {}
    for seed in seeds:
        record = _read_result(base / f"seed_{seed}" / SEED_FILE)
        if record.get("config_sha256") != sha:
            raise ConfigError(f"--merge: {base / f'seed_{seed}' / SEED_FILE} was trained with another config than this one")
        results[seed] = record["metrics"]
    summary = summarize_seeds(results, _classes(base / f"seed_{seeds[0]}"))
    if is_main_process():
        write_json(summary, base / "seeds_summary.json")
        (base / "seeds_summary.txt").write_text(format_summary(summary) + "\n")
    return summary


def _read_result(path: Path) -> dict:
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(record, dict) or not isinstance(record.get("metrics"), dict):
            raise ValueError("not an object with metrics")
        return record
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: not readable as a seed's result ({e}); train that seed again") from None


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
