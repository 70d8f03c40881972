"""label_fixes on every reader that also cuts hold-outs and folds: the parts stay disjoint and
complete whatever the fixes say, and a malformed fix file is one error naming its line."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from mlcls.errors import DataError


@pytest.fixture(scope="module")
def mrnet_small(tmp_path_factory):
    from mlcls.datasets.mrnet import make_mrnet_demo

    return make_mrnet_demo(tmp_path_factory.mktemp("mrnet_fixes"), seed=0, exams={"train": 40, "valid": 8}, slices=(4, 5))


def _csv_kw(root):
    return {"ann_file": "train.csv", "classes": "classes.txt", "data_root": str(root), "check_files": False}


def _mrnet_kw(root):
    return {"data_root": str(root), "split": "train", "views": ["sagittal"], "check_files": False}


def _build(kind, root, **kw):
    from mlcls.datasets import CSVDataset, MRNetDataset

    return CSVDataset(**_csv_kw(root), **kw) if kind == "csv" else MRNetDataset(**_mrnet_kw(root), **kw)


def _targets(ds) -> dict:
    return {ds.label_index.paths[i].decode(): ds.get_target(i) for i in range(len(ds))}


def _flip_fixes(ds, rows, path) -> dict:
    """A fix file that flips class 0 of ``rows`` of ``ds``; returns {path: fixed target}."""
    lines, fixed = ["path,class,label"], {}
    for r in rows:
        rel, t = ds.label_index.paths[r].decode(), ds.get_target(r).clone()
        t[0] = 1 - t[0]
        lines.append(f"{rel},{ds.classes[0]},{int(t[0])}")
        fixed[rel] = t
    path.write_text("\n".join(lines) + "\n")
    return fixed


@pytest.mark.parametrize("kind", ["csv", "mrnet"])
@pytest.mark.parametrize("fix_in", ["train", "val", "both"])
def test_holdout_and_folds_parts_stay_disjoint_and_complete_with_fixes(kind, fix_in, shapes_root, mrnet_small, tmp_path):
    """Fixes used to be applied before the cut: one fixed row moved 22 of 48 validation exams into
    training. The parts are now cut on the file's labels: the same parts with and without fixes."""
    root = shapes_root if kind == "csv" else mrnet_small
    full = _build(kind, root)
    hold = {"fraction": 0.25, "seed": 0}
    plain = {part: _build(kind, root, holdout={**hold, "part": part}) for part in ("train", "val")}
    # fix many rows (class 0 flipped) of the chosen part(s): enough to change any stratification
    rows_of = {p: i for i, p in enumerate(full.label_index.paths.tolist())}
    chosen = [rows_of[p] for part in (("train", "val") if fix_in == "both" else (fix_in,)) for p in plain[part].label_index.paths.tolist()]
    fixed_targets = _flip_fixes(full, chosen[::2], tmp_path / "fixes.csv")
    fixed = {part: _build(kind, root, holdout={**hold, "part": part}, label_fixes=str(tmp_path / "fixes.csv")) for part in ("train", "val")}
    names = {part: set(_targets(ds)) for part, ds in fixed.items()}
    assert names["train"].isdisjoint(names["val"])
    assert names["train"] | names["val"] == set(_targets(full))
    for part in ("train", "val"):
        assert names[part] == set(_targets(plain[part]))  # the fixes moved no sample
        got, before = _targets(fixed[part]), _targets(plain[part])
        for rel, t in got.items():
            assert torch.equal(t, fixed_targets.get(rel, before[rel])), rel  # each part carries its own samples' fixes
        applied = sum(rel in fixed_targets for rel in got)
        assert fixed[part].label_fixes["applied"] == applied and fixed[part].label_fixes["changed"] == applied
        assert fixed[part].label_fixes["rows"] == len(fixed_targets) and len(fixed[part].label_fixes["fixes"]) == len(fixed_targets)
    # folds inside the training part: cut on the file's labels too
    folds = {(f, p): _build(kind, root, holdout={**hold, "part": "train"}, folds={"k": 3, "fold": f, "part": p},
                            label_fixes=str(tmp_path / "fixes.csv")) for f in range(3) for p in ("train", "held")}  # fmt: skip
    held = [set(_targets(folds[(f, "held")])) for f in range(3)]
    assert sum(len(h) for h in held) == len(names["train"]) and set().union(*held) == names["train"]
    for f in range(3):
        assert set(_targets(folds[(f, "train")])) == names["train"] - held[f]
        unfixed = _build(kind, root, holdout={**hold, "part": "train"}, folds={"k": 3, "fold": f, "part": "held"})
        assert set(_targets(unfixed)) == held[f]


def test_label_fixes_are_stored_with_their_hash(shapes_root, tmp_path, mlcls_log):
    from mlcls.datasets import CSVDataset

    kw = _csv_kw(shapes_root)
    plain = CSVDataset(**kw)
    rel = plain.label_index.paths[3].decode()
    c0, c1 = plain.classes[0], plain.classes[1]
    before = plain.get_target(3).clone()
    fixes = tmp_path / "label_fixes.csv"
    # a byte-order mark (a spreadsheet's "CSV UTF-8"), data_root in front of a path, a repeated identical row
    fixes.write_bytes(f"\ufeffpath,class,label\n{rel},{c0},{1 - int(before[0])}\n{shapes_root / rel},{c1},-1\n{rel},{c1},-1\n".encode())
    fixed = CSVDataset(**kw, label_fixes=str(fixes))
    after = fixed.get_target(3)
    assert after[0] == 1 - before[0] and after[1] == -1 and torch.equal(after[2:], before[2:])
    assert all(torch.equal(fixed.get_target(i), plain.get_target(i)) for i in range(len(plain)) if i != 3)
    import hashlib

    rec = fixed.label_fixes
    assert rec["sha256"] == hashlib.sha256(fixes.read_bytes()).hexdigest() and rec["file"] == str(fixes)
    assert rec["rows"] == 2 and rec["applied"] == 2 and rec["changed"] == 2
    assert rec["fixes"] == [[rel, c0, 1 - int(before[0])], [str(shapes_root / rel), c1, -1]]
    assert "label_fixes: 2 fixes" in mlcls_log.text


def _latin1(rel, c0):
    return f"path,class,label\n{rel},{c0},1\ncaf\xe9.png,{c0},1\n".encode("latin-1")


# (file content or a callable of (rel, c0), the error expected)
FIX_PROBES = [
    ("path,class,label\nnope.png,{c0},1\n", r"label_fixes\.csv:2: 'nope\.png' is not a sample"),
    ("path,class,label\n{rel},{c0},1\n{rel},cat,1\n", r"label_fixes\.csv:3: unknown class 'cat'"),
    ("path,class,label\n{rel},{c0},2\n", r"label_fixes\.csv:2: label must be 1, 0 or -1"),
    ("path,class,label\n{rel},{c0},1.0\n", r"label_fixes\.csv:2: label must be 1, 0 or -1 \(unknown\), got '1\.0'"),
    ("file,label\n{rel},1\n", r"label_fixes\.csv:1: expected the header 'path,class,label'$"),
    ("path;class;label\n{rel};{c0};1\n", r"label_fixes\.csv:1: expected the header 'path,class,label' \(fields separated by ';'"),
    ("path,class,label\n{rel},{c0},1\n{rel},{c0},0\n", r"label_fixes\.csv:3: .* is fixed to 0 here and to 1 on line 2"),
    ("path,class,label\n{rel}\n", r"label_fixes\.csv:2: expected 'path,class,label', got 1 field"),
    (_latin1, r"label_fixes\.csv:3: not UTF-8 text"),
    ("root:x:0:0:root:/root:/bin/bash\n", r"label_fixes\.csv:1: expected the header 'path,class,label'$"),  # content not echoed
]


@pytest.mark.parametrize("content, message", FIX_PROBES)
def test_a_bad_fix_file_is_one_error_naming_its_line(content, message, shapes_root, tmp_path):
    from mlcls.datasets import CSVDataset

    kw = _csv_kw(shapes_root)
    plain = CSVDataset(**kw)
    rel, c0 = plain.label_index.paths[3].decode(), plain.classes[0]
    fixes = tmp_path / "label_fixes.csv"
    if callable(content):
        fixes.write_bytes(content(rel, c0))
    else:
        fixes.write_text(content.format(rel=rel, c0=c0))
    with pytest.raises(DataError, match=message):
        CSVDataset(**kw, label_fixes=str(fixes))


@pytest.mark.parametrize("value, message", [
    (123, r"CSVDataset\.label_fixes: expected the path of a CSV"),
    ("", r"CSVDataset\.label_fixes: expected the path of a CSV"),
    (["a.csv"], r"CSVDataset\.label_fixes: expected the path of a CSV"),
    ("missing.csv", r"label_fixes: file not found: .*missing\.csv"),
    ("fifo", r"label_fixes: .*fifo is not a regular file"),
])  # fmt: skip
def test_the_label_fixes_key_is_checked(value, message, shapes_root, tmp_path):
    from mlcls.datasets import CSVDataset

    if value == "fifo":
        os.mkfifo(tmp_path / "fifo")
        value = str(tmp_path / "fifo")
    with pytest.raises(DataError, match=message):
        CSVDataset(**_csv_kw(shapes_root), label_fixes=value)


def test_fold_assignment_ignores_fixes(shapes_root, tmp_path):
    """``split_index`` (what --folds cuts) holds the file's labels, not the fixed ones."""
    from mlcls.datasets import CSVDataset
    from mlcls.datasets.base import fold_assignment

    plain = CSVDataset(**_csv_kw(shapes_root))
    _flip_fixes(plain, range(0, len(plain), 2), tmp_path / "fixes.csv")
    fixed = CSVDataset(**_csv_kw(shapes_root), label_fixes=str(tmp_path / "fixes.csv"))
    assert not np.array_equal(fixed.label_index.vals, plain.label_index.vals) or not np.array_equal(
        fixed.label_index.ids, plain.label_index.ids
    )
    a = fold_assignment(plain.split_index, plain.num_classes, 3, 0)
    b = fold_assignment(fixed.split_index, fixed.num_classes, 3, 0)
    assert np.array_equal(a, b)
