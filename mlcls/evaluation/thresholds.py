"""Which decision thresholds an evaluation, a prediction, an export or a report uses: one rule.

Precedence (:func:`resolve_thresholds`): thresholds given explicitly (a number, one per class, a
``{class: thr}`` dict, a threshold record or the path of a JSON file holding one); else the
per-class thresholds tuned on validation and stored in the checkpoint; else the evaluator's
``thr``; else 0.5. The result says where the values came from, for logs, reports and exports.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from mlcls.errors import CheckpointError, ConfigError
from mlcls.utils.fileio import loads_json_strict

#: the threshold of a model whose checkpoint and config name none
DEFAULT_THR = 0.5


@dataclass(frozen=True)
class Thresholds:
    """Resolved thresholds.

    Attributes:
        values: [C] float64, one threshold per class (in the model's class order; float64 so that
            values written to JSON read back exactly; comparisons happen in the scores' dtype).
        source: where they came from, e.g. ``checkpoint (f1 on 'val')``, ``thr 0.3``,
            ``file thresholds.json``, ``config evaluator (thr 0.4)``, ``default 0.5``.
        record: the checkpoint's threshold record when that was used (its ``fallback_classes``,
            ``min_pos`` and ``global_thr`` explain classes tuned with too few positives), else None.
    """

    values: torch.Tensor
    source: str
    record: dict | None = None

    @property
    def uniform(self) -> float | None:
        """The one value every class shares, or None when they differ."""
        return float(self.values[0]) if len(self.values) and bool((self.values == self.values[0]).all()) else None


def threshold_values(thr: Any, classes: Sequence[str], where: str = "thr") -> float | list[float]:
    """Thresholds given in any accepted form, as a number or one value per class (in ``classes`` order).

    Accepted: a number; a list of one number per class; a ``{class name: threshold}`` dict; a
    threshold record (``{"values": [...], "classes": [...], ...}``, as stored in checkpoints, written
    to ``thresholds.json`` and downloaded from the evaluation report; matched by class name); or
    the path of a JSON file holding any of these. ``where`` names the value in errors.

    Raises:
        ConfigError: naming ``where`` (or the file) and what was expected.
    """
    if isinstance(thr, (str, os.PathLike)):
        if not os.path.exists(thr) and not str(thr).lower().endswith(".json"):
            raise ConfigError(
                f"{where}: expected a number in [0, 1], a list of {len(classes)} of them, or the path of a thresholds JSON file, got {thr!r}"
            )
        where = str(thr)
        try:
            thr = loads_json_strict(Path(thr).read_text(encoding="utf-8"), where)
        except OSError as e:
            raise ConfigError(f"thresholds file {where}: cannot read it ({e.strerror or e})") from None
        except ValueError as e:
            raise ConfigError(f"thresholds file {where}: not valid JSON ({e})") from None
    if isinstance(thr, dict) and "values" in thr:
        if "classes" not in thr:
            return _check_values(thr["values"], classes, where)
        if not isinstance(thr["classes"], list) or not isinstance(thr["values"], list) or len(thr["classes"]) != len(thr["values"]):
            raise ConfigError(f"{where}: 'classes' and 'values' must be lists of the same length")
        thr = dict(zip(thr["classes"], thr["values"]))
    if isinstance(thr, dict):
        unknown = [k for k in thr if k not in classes]
        missing = [c for c in classes if c not in thr]
        if unknown or missing:
            parts = ([f"unknown classes {unknown[:5]}"] if unknown else []) + ([f"no threshold for {missing[:5]}"] if missing else [])
            raise ConfigError(f"{where}: the thresholds do not match the model's {len(classes)} classes ({'; '.join(parts)})")
        thr = [thr[c] for c in classes]
    return _check_values(thr, classes, where)


def _check_values(thr: Any, classes: Sequence[str], where: str) -> float | list[float]:
    n = len(classes)
    many = isinstance(thr, (list, tuple, torch.Tensor, np.ndarray))
    values = list(thr) if many else [thr]
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float, np.floating, np.integer, torch.Tensor)) or not 0 <= float(v) <= 1:
            raise ConfigError(f"{where}: expected a number in [0, 1] or a list of {n} of them, got {thr!r}")
    if many and len(values) != n:
        raise ConfigError(f"{where}: {len(values)} thresholds given for {n} classes")
    return [float(v) for v in values] if many else float(values[0])


def _vector(values: float | list[float], n: int) -> torch.Tensor:
    if isinstance(values, list):
        return torch.tensor(values, dtype=torch.float64)
    return torch.full((n,), float(values), dtype=torch.float64)


def resolve_thresholds(
    classes: Sequence[str],
    given: Any = None,
    stored: dict | None = None,
    evaluator: dict | None = None,
    given_as: str = "thr",
    checkpoint: str | os.PathLike | None = None,
) -> Thresholds:
    """The thresholds to use, and where they came from (the one rule of this module's docstring).

    Args:
        classes: the model's class names (C of them).
        given: explicit thresholds in any form :func:`threshold_values` accepts, or None.
        stored: the checkpoint's ``thresholds`` record (tuned on validation), or None.
        evaluator: the config's ``test_evaluator`` (else ``val_evaluator``) section; its ``thr``.
        given_as: how the caller's user gave ``given`` (``thr``, ``--thr``), for the source.
        checkpoint: the checkpoint ``stored`` came from, named when its record does not fit.

    Returns:
        :class:`Thresholds` with ``values`` [C].

    Raises:
        ConfigError: ``given`` or the evaluator's ``thr`` is malformed or does not fit ``classes``.
        CheckpointError: the stored record does not fit ``classes`` (never silently replaced by 0.5).
    """
    n = len(classes)
    if given is not None:
        values = threshold_values(given, classes, given_as)
        if isinstance(given, (str, os.PathLike)):
            source = f"file {given}"
        else:
            source = f"{given_as} {values:g}" if isinstance(values, float) else f"{given_as} (per class)"
        return Thresholds(_vector(values, n), source)
    if stored:
        try:
            values = threshold_values(stored, classes, "stored thresholds")
        except ConfigError as e:
            raise CheckpointError(
                f"{checkpoint or 'the checkpoint'}: {e}; re-tune them (tools/test.py --tune-thr) or pass thresholds explicitly"
            ) from None
        source = f"checkpoint ({stored.get('objective', '?')} on '{stored.get('split', '?')}')"
        return Thresholds(_vector(values, n), source, stored)
    thr = (evaluator or {}).get("thr")
    if thr is not None:
        values = threshold_values(thr, classes, "evaluator thr")
        shown = f"{values:g}" if isinstance(values, float) else "per class"
        return Thresholds(_vector(values, n), f"config evaluator (thr {shown})")
    return Thresholds(_vector(DEFAULT_THR, n), f"default {DEFAULT_THR:g}")


def evaluator_section(cfg: dict) -> dict:
    """The config's evaluator for test-time use: ``test_evaluator``, else ``val_evaluator``, else ``{}``."""
    return dict(cfg.get("test_evaluator") or cfg.get("val_evaluator") or {})
