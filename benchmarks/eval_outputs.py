"""The evaluation outputs of every tool on a small demo, as one hash per file: two trees compared.

python benchmarks/eval_outputs.py --out /tmp/eval && mv /tmp/eval /tmp/eval_a   # in one checkout (before a change)
python benchmarks/eval_outputs.py --out /tmp/eval && mv /tmp/eval /tmp/eval_b   # in another (after it)
python benchmarks/eval_outputs.py --compare /tmp/eval_a /tmp/eval_b

Both runs use the same --out: the labels' and the config's hashes that the folds record cover
the data's and the work dir's absolute paths.

Runs, on a small demo set (generated) with one thread, through the command-line tools of the tree
the script lives in: a training; ``tools/test.py`` with tuned thresholds, bootstrap intervals,
``--out`` rows and the report; a second evaluation at other thresholds; ``--folds 2`` with its
held-out and out-of-fold scores; ``tools/find_label_issues.py`` on them with a ``--write-fixes``
policy; ``tools/report.py`` rebuilding a page from saved scores (with the flags for review) and
comparing two evaluations. It writes ``manifest.json``: for each evaluation output, the SHA-256
of its content (an ``.npz``: of each array; text: with what differs from run to run blanked: the
creation time, and the hash of a scores file's bytes, whose zip records the time of writing). ``--compare A B`` names every file whose content differs.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
#: the outputs compared (logs, checkpoints, TensorBoard and timing files are not evaluation outputs)
SUFFIXES = (".json", ".csv", ".txt", ".html", ".npz", ".png")
SKIPPED = ("manifest.json", "scalars.jsonl", "config.yaml", "train_config.yaml", "run.json")
CREATED = re.compile(rb"\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}(:\d{2})?")
FILE_HASH = re.compile(rb'"scores_sha256": "[0-9a-f]{64}"')


def normalise(data: bytes, out: Path) -> bytes:
    """``data`` with the creation times blanked and the run's own folders named OUT and ROOT."""
    data = FILE_HASH.sub(b'"scores_sha256": "HASH"', data.replace(str(out).encode(), b"OUT").replace(str(ROOT).encode(), b"ROOT"))
    return CREATED.sub(b"DATE", data)


def content_hash(path: Path, out: Path) -> str:
    """SHA-256 of what ``path`` holds: each array of an ``.npz`` (the zip's own times differ), else its bytes, normalised."""
    h = hashlib.sha256()
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as z:
            for key in sorted(z.files):
                a = z[key]
                if a.dtype.kind == "U":  # paths, classes and the meta JSON: text
                    a = np.array([normalise(str(v).encode(), out).decode() for v in a.reshape(-1)])
                h.update(key.encode() + str(a.dtype).encode() + str(a.shape).encode() + a.tobytes())
        return h.hexdigest()
    h.update(normalise(path.read_bytes(), out))
    return h.hexdigest()


def run_tools(out: Path) -> None:
    """Every tool's evaluation outputs on a small demo set, in ``out``."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    py = [sys.executable]
    subprocess.run([*py, "-c", "import sys; from mlcls.datasets.shapes import make_shapes_dataset; "
                    "make_shapes_dataset(sys.argv[1], seed=0, size=32, splits={'train': 240, 'val': 80, 'test': 80})",
                    str(out / "data")], check=True, env=env)  # fmt: skip
    data = [f"{s}_dataloader.{k}" for s in ("train", "val", "test") for k in (f"dataset.data_root={out / 'data'}", "num_workers=0")]
    opts = ["--cfg-options", *data, "train_cfg.max_epochs=2", "train_cfg.val_interval=1", "default_hooks.logger.tensorboard=false"]
    config = str(ROOT / "configs/demo/resnet18_shapes.yaml")
    steps = [
        ["tools/train.py", config, "--work-dir", str(out / "run"), *opts],
        ["tools/test.py", config, str(out / "run/latest.pth"), "--work-dir", str(out / "test"), "--tune-thr", "f1",
         "--allow-same-split", "--ci", "50", "--out", str(out / "test/rows.csv"), *opts],
        ["tools/test.py", str(out / "run/latest.pth"), "--work-dir", str(out / "test_thr03"), "--thr", "0.3",
         "--out", str(out / "test_thr03/rows.json")],
        ["tools/train.py", config, "--work-dir", str(out / "folds"), "--folds", "2", *opts],
        ["tools/find_label_issues.py", str(out / "folds"), "--write-fixes", "missing_ignore"],
        ["tools/report.py", str(out / "folds"), "--out", str(out / "folds/report_oof.html")],
        ["tools/report.py", str(out / "test"), "--out", str(out / "test/report_again.html")],
        ["tools/report.py", str(out / "test"), str(out / "test_thr03"), "--resamples", "50"],
    ]  # fmt: skip
    for step in steps:
        print("$", " ".join(step), flush=True)
        subprocess.run([*py, str(ROOT / step[0]), *step[1:]], check=True, env=env, cwd=out, stdout=subprocess.DEVNULL)


def manifest(out: Path) -> dict:
    files = sorted(
        p
        for p in out.rglob("*")
        if p.is_file() and p.suffix in SUFFIXES and p.name not in SKIPPED and "data" not in p.relative_to(out).parts
    )
    return {str(p.relative_to(out)): content_hash(p, out) for p in files}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", help="run the tools here and write manifest.json")
    p.add_argument("--hash-only", action="store_true", help="with --out: hash the outputs already there, run nothing")
    p.add_argument("--compare", nargs=2, metavar=("A", "B"), help="two --out folders: the files whose content differs")
    args = p.parse_args()
    if args.compare:
        a, b = (json.loads((Path(d) / "manifest.json").read_text()) for d in args.compare)
        differ = sorted(k for k in a.keys() & b.keys() if a[k] != b[k])
        for name, only in (("A", a.keys() - b.keys()), ("B", b.keys() - a.keys())):
            for k in sorted(only):
                print(f"only in {name}: {k}")
        for k in differ:
            print(f"differs: {k}")
        print(f"{len(a.keys() & b.keys()) - len(differ)} of {len(a.keys() | b.keys())} files identical")
        sys.exit(1 if differ or a.keys() != b.keys() else 0)
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    if not args.hash_only:
        run_tools(out)
    hashes = manifest(out)
    (out / "manifest.json").write_text(json.dumps(hashes, indent=1) + "\n")
    print(f"{len(hashes)} evaluation outputs hashed -> {out / 'manifest.json'}")


if __name__ == "__main__":
    main()
