import pickle

import pytest
import torch

from mlcls.errors import CheckpointError
from mlcls.utils.checkpoint import atomic_save, load_checkpoint, save_checkpoint


class Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_round_trip_with_plain_types(tmp_path):
    state = {"state_dict": {"w": torch.ones(2)}, "meta": {"classes": ["a", "b"], "epoch": 3, "config": {"x": [1, 2.5, None]}}}
    save_checkpoint(state, tmp_path / "c.pth")
    back = load_checkpoint(tmp_path / "c.pth")
    assert back["meta"] == state["meta"] and torch.equal(back["state_dict"]["w"], torch.ones(2))


def test_failed_write_keeps_previous_file_and_leaves_no_temp(tmp_path, monkeypatch):
    path = tmp_path / "latest.pth"
    save_checkpoint({"meta": {"epoch": 1}}, path)

    def broken_save(obj, f, *a, **k):
        f.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        atomic_save({"meta": {"epoch": 2}}, path)
    monkeypatch.undo()
    assert load_checkpoint(path)["meta"]["epoch"] == 1  # the previous checkpoint survives intact
    assert [p.name for p in tmp_path.iterdir()] == ["latest.pth"]


def test_rejects_pickles_truncated_files_and_foreign_checkpoints(tmp_path):
    evil = tmp_path / "evil.pth"
    with open(evil, "wb") as f:
        torch.save({"x": Evil()}, f, pickle_module=pickle)
    with pytest.raises(CheckpointError, match="refusing to load .*evil.pth.*could run arbitrary code"):
        load_checkpoint(evil)  # weights_only refuses arbitrary objects
    save_checkpoint({"meta": {}}, tmp_path / "ok.pth")
    data = (tmp_path / "ok.pth").read_bytes()
    (tmp_path / "trunc.pth").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="trunc.pth"):
        load_checkpoint(tmp_path / "trunc.pth")
    torch.save({"weight": torch.zeros(1)}, tmp_path / "plain.pth")
    with pytest.raises(CheckpointError, match="not an mlcls checkpoint"):
        load_checkpoint(tmp_path / "plain.pth")
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "none.pth")
