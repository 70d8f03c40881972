import os
import stat

import pytest
from PIL import Image

from mlcls.utils.fileio import atomic_open, atomic_path


def names(folder):
    return sorted(p.name for p in folder.iterdir())


def test_success_writes_the_file_with_umask_permissions_and_no_temp(tmp_path):
    old = os.umask(0o022)
    try:
        with atomic_open(tmp_path / "sub" / "a.json") as f:
            f.write('{"x": "é"}')
    finally:
        os.umask(old)
    path = tmp_path / "sub" / "a.json"
    assert path.read_text(encoding="utf-8") == '{"x": "é"}'
    assert stat.S_IMODE(path.stat().st_mode) == 0o644  # like open(); mkstemp would give 0600
    assert names(path.parent) == ["a.json"]


def test_failure_keeps_the_previous_file_and_removes_the_temp(tmp_path):
    path = tmp_path / "metrics.csv"
    path.write_text("old\n")
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_open(path, newline="") as f:
            f.write("half a file")
            raise RuntimeError("boom")
    assert path.read_text() == "old\n" and names(tmp_path) == ["metrics.csv"]


def test_temp_path_keeps_the_extension_and_is_unique(tmp_path):
    target = tmp_path / "grid.png"
    with atomic_path(target) as t1, atomic_path(target) as t2:
        assert t1 != t2 and t1.parent == t2.parent == tmp_path and t1.suffix == ".png"
        assert not target.exists()  # nothing under the final name until the block succeeds
        Image.new("RGB", (4, 4), "red").save(t1)  # Pillow picks the format from the suffix
        Image.new("RGB", (4, 4), "blue").save(t2)
    assert Image.open(target).getpixel((0, 0)) == (255, 0, 0)  # t1 finished last, so it wins, whole
    assert names(tmp_path) == ["grid.png"]
