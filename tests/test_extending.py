"""The worked example of docs/extending.md (a user dataset, head, loss and hook), run exactly as
written through train, test, infer and export; without the plugin on the path, one clear line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "docs" / "examples" / "my_plugins"


def run(*args, plugins=True, cwd):
    env = {**os.environ, "PYTHONPATH": str(EXAMPLE) if plugins else ""}
    return subprocess.run([sys.executable, *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=600, env=env)


def test_the_plugin_example_goes_through_every_tool(shapes_root, tmp_path):
    # the example's data layout (data/tsv/*.tsv) from the tiny shapes set, in a scratch project folder
    classes = ["circle", "square", "triangle"]
    tsv = tmp_path / "data" / "tsv"
    tsv.mkdir(parents=True)
    for split in ("train", "val"):
        rows = []
        for line in (shapes_root / f"{split}.csv").read_text().splitlines()[1:]:
            path, labels = line.split(",", 1)
            rows.append(f"{shapes_root / path}\t{','.join(n for n in labels.split() if n in classes)}")
        (tsv / f"{split}.tsv").write_text("\n".join(rows) + "\n")
    cfg = yaml.safe_load((EXAMPLE / "my_config.yaml").read_text())
    assert cfg["custom_imports"] == ["my_plugins"]
    tools = ROOT / "tools"
    wd = tmp_path / "work_dirs" / "plugins"
    r = run(tools / "train.py", EXAMPLE / "my_config.yaml", "--work-dir", wd, "--cfg-options", "train_cfg.max_epochs=1", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert [json.loads(x)["epoch"] for x in (wd / "history.jsonl").read_text().splitlines()] == [1]  # the user's hook ran
    stored = yaml.safe_load((wd / "config.yaml").read_text())
    assert stored["model"]["head"]["type"] == "CosineHead" and stored["custom_imports"] == ["my_plugins"]

    # checkpoint only: its stored config is data, so importing my_plugins needs the user's word
    r = run(tools / "test.py", wd / "best.pth", cwd=tmp_path)
    assert r.returncode == 2 and "custom_imports" in r.stderr and "--trust-config" in r.stderr, r.stderr
    assert r.stderr.strip().splitlines() == [r.stderr.strip()]
    assert "sens@spec90" in json.loads((wd / "history.jsonl").read_text().splitlines()[0])  # the user's metric, in validation
    r = run(tools / "test.py", wd / "best.pth", "--trust-config", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "mAP" in r.stdout and (wd / "test_best" / "test_metrics.json").is_file()
    # ... and in tools/test.py: the printed report, test_metrics.json and the report's header
    assert "SensitivityAtSpecificity: sens@spec90 " in r.stdout
    res = json.loads((wd / "test_best" / "test_metrics.json").read_text())
    assert res["evaluator"]["type"] == "SensitivityAtSpecificity" and res["sens@spec90"] == res["evaluator"]["metrics"]["sens@spec90"]
    assert "SensitivityAtSpecificity: sens@spec90" in (wd / "test_best" / "report.html").read_text()
    r = run(
        tools / "infer.py",
        wd / "best.pth",
        tsv.parent.parent / "data" / "tsv",
        shapes_root / "images" / "val",
        "--out",
        tmp_path / "p.csv",
        "--trust-config",
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr
    assert len((tmp_path / "p.csv").read_text().splitlines()) == 1 + 64
    r = run(
        tools / "export.py", wd / "best.pth", "--format", "onnx", "--out", tmp_path / "m.onnx", "--verify", "--trust-config", cwd=tmp_path
    )
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp_path / "m.json").read_text())["classes"] == classes

    r = run(tools / "test.py", wd / "best.pth", "--trust-config", plugins=False, cwd=tmp_path)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [r.stderr.strip()] and "my_plugins" in r.stderr and "trained with custom components" in r.stderr
