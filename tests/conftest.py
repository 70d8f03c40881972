"""Shared fixtures: a tiny real image dataset on disk and a tiny config that trains on it."""

from __future__ import annotations

import copy
import os
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mlcls.datasets.shapes import make_shapes_dataset  # noqa: E402
from mlcls.utils.cores import worker_env  # noqa: E402

if os.environ.get("PYTEST_XDIST_WORKER"):
    # the suite runs in N pytest processes (pytest -n N): each takes its share of the cores, as a
    # worker of a --workers pool does, and the trainings its tests start as subprocesses inherit it
    # (OpenMP threads spinning for cores another process holds would slow every test)
    os.environ.setdefault("OMP_NUM_THREADS", worker_env(int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")), 0)["OMP_NUM_THREADS"])
    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
else:
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

TINY_SPLITS = {"train": 96, "val": 64, "test": 64}


@pytest.fixture(scope="session", autouse=True)
def fixed_threads():
    """The threads fixed for the tests, as under -n: a training whose threads nobody fixed takes
    its share of the cores, which would make a result depend on what else trains on the machine
    (tests/utils/test_cores.py tests that share with the variable removed). A fixture, not an
    import-time setting: under -n the controller process imports this file too, and its workers
    would inherit its value instead of their share."""
    os.environ.setdefault("OMP_NUM_THREADS", str(torch.get_num_threads()))


@pytest.fixture(scope="session")
def shapes_root(tmp_path_factory) -> Path:
    """The procedural shapes set at 32 px: real PNG files + CSV lists, written once per session."""
    return make_shapes_dataset(tmp_path_factory.mktemp("shapes"), seed=1, size=32, splits=TINY_SPLITS)


def tiny_config(root: Path, work_dir: Path, **train_cfg) -> dict:
    """A complete config dict: ResNet-18 on the tiny shapes set, CPU, no workers."""
    pipeline = [{"type": "ToFloatNormalize", "mean": [0.5] * 3, "std": [0.25] * 3}]

    def loader(split: str, shuffle: bool) -> dict:
        return {
            "batch_size": 16,
            "num_workers": 0,
            "sampler": {"type": "DefaultSampler", "shuffle": shuffle},
            "dataset": {
                "type": "CSVDataset",
                "data_root": str(root),
                "ann_file": str(root / f"{split}.csv"),
                "classes": str(root / "classes.txt"),
                "pipeline": copy.deepcopy(pipeline),
            },
        }

    return {
        "model": {
            "type": "ImageClassifier",
            "backbone": {"type": "ResNet", "depth": 18},
            "head": {"type": "MultiLabelLinearClsHead", "loss": {"type": "BCEWithLogitsLoss"}},
        },
        "train_dataloader": loader("train", True),
        "val_dataloader": loader("val", False),
        "test_dataloader": loader("test", False),
        "val_evaluator": {"type": "MultiLabelMetric", "thr": 0.5},
        "optimizer": {"type": "AdamW", "lr": 1e-3},
        "param_scheduler": [{"type": "LinearLR", "start_factor": 0.1, "end": 1}, {"type": "CosineAnnealingLR"}],
        "train_cfg": {"max_epochs": 2, "val_interval": 1, **train_cfg},
        "default_hooks": {
            # TensorBoard and its labelled image grid (a matplotlib figure per validation, about a
            # second each) are read back in tests/engine/test_trainer.py, which turns them on
            "logger": {"type": "LoggerHook", "interval": 2, "progress_bar": False, "tensorboard": False, "val_images": 0},
            "checkpoint": {"type": "CheckpointHook", "interval": 1, "save_best": "mAP"},
        },
        "work_dir": str(work_dir),
        "seed": 0,
        "deterministic": True,
        "device": "cpu",
    }


@pytest.fixture
def make_config(shapes_root, tmp_path):
    def factory(work_dir: Path | None = None, **train_cfg) -> dict:
        return tiny_config(shapes_root, work_dir or tmp_path / "work", **train_cfg)

    return factory


@pytest.fixture
def config_file(shapes_root, tmp_path) -> Path:
    """``tiny_config`` as a YAML file without a work_dir (tools get ``--work-dir``)."""
    import yaml

    cfg = tiny_config(shapes_root, tmp_path / "work")
    del cfg["work_dir"]
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture
def run_tool(capsys):
    """Run ``tools/<name>.py``'s ``main(argv)`` in this process (no interpreter start-up).

    Returns an object with ``returncode`` (the ``SystemExit`` code, 0 otherwise), ``stdout`` and
    ``stderr``, like ``subprocess.run``; tests keep one real subprocess per tool for the rest.
    """
    import importlib.util
    import logging
    import types

    def call(tool: str, *args):
        try:
            spec = importlib.util.spec_from_file_location(f"_tool_{Path(tool).stem}", ROOT / tool)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            capsys.readouterr()
            try:
                module.main([str(a) for a in args])
                code = 0
            except SystemExit as e:
                code = e.code
        finally:
            # a tool may have bound the mlcls console handler to this test's captured stream
            log = logging.getLogger("mlcls")
            for h in [h for h in log.handlers if getattr(h, "_mlcls_console", False)]:
                log.removeHandler(h)
        out = capsys.readouterr()
        return types.SimpleNamespace(returncode=code, stdout=out.out, stderr=out.err)

    return call


@pytest.fixture
def mlcls_log(caplog):
    """``caplog`` that also sees the 'mlcls' logger after a tool has set it not to propagate."""
    import logging

    log = logging.getLogger("mlcls")
    old = log.level
    log.addHandler(caplog.handler)
    log.setLevel(logging.INFO)
    yield caplog
    log.removeHandler(caplog.handler)
    log.setLevel(old)


def assert_metrics_match_sklearn(metrics: dict, scores, targets, thr: float = 0.5) -> None:
    """``metrics`` (mAP, CP, CR, CF1, OP, OR, OF1 in %) equal scikit-learn's on ``scores``/``targets``
    [N, C] (entries of -1 left out; mAP over the classes with a positive; C* macro over classes):
    a known value instead of a range that any number passes."""
    import numpy as np
    from sklearn.metrics import average_precision_score, precision_score, recall_score

    s, t = np.asarray(scores, dtype=np.float64), np.asarray(targets)
    aps, ps, rs = [], [], []
    tp = fp = fn = 0
    for c in range(s.shape[1]):
        known = t[:, c] >= 0
        y, x = t[known, c] == 1, s[known, c]
        pred = x >= thr
        if y.any():
            aps.append(average_precision_score(y, x))
        ps.append(precision_score(y, pred, zero_division=0))
        rs.append(recall_score(y, pred, zero_division=0))
        tp, fp, fn = tp + int((pred & y).sum()), fp + int((pred & ~y).sum()), fn + int((~pred & y).sum())
    cp, cr = 100 * np.mean(ps), 100 * np.mean(rs)
    op, orr = 100 * tp / max(tp + fp, 1), 100 * tp / max(tp + fn, 1)
    expected = {
        "mAP": 100 * np.mean(aps), "CP": cp, "CR": cr, "CF1": 2 * cp * cr / (cp + cr) if cp + cr else 0.0,
        "OP": op, "OR": orr, "OF1": 2 * op * orr / (op + orr) if op + orr else 0.0,
    }  # fmt: skip
    for key, value in expected.items():
        assert metrics[key] == pytest.approx(value, abs=1e-3), key
