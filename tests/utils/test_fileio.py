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


def _hold_the_lock_with_busy_workers(work_dir: str, pid_dir: str) -> None:
    """A run's shape: it takes the work-dir lock, then DataLoader workers (forked) sit in a sample."""
    import time

    import torch

    from mlcls.utils.fileio import WorkDirLock

    class Slow(torch.utils.data.Dataset):
        def __len__(self):
            return 100

        def __getitem__(self, i):
            open(os.path.join(pid_dir, str(os.getpid())), "w").close()  # this worker is alive and busy
            time.sleep(60)  # busy in a sample: the worker cannot notice its parent's death for a minute
            return i

    WorkDirLock(work_dir).acquire()
    loader = torch.utils.data.DataLoader(Slow(), num_workers=2, batch_size=1, multiprocessing_context="fork")
    next(iter(loader))


def test_the_lock_dies_with_its_process_not_with_its_dataloader_workers(tmp_path):
    # A run SIGKILLed while DataLoader workers are busy: its workers live on for seconds, and the
    # next run (a scheduler's requeue, --resume at once) must get the work dir all the same.
    import multiprocessing
    import signal
    import time

    from mlcls.errors import ConfigError
    from mlcls.utils.fileio import WorkDirLock

    runs = []  # ten runs (forked from this process: no interpreter start-up each), killed one after another
    try:
        for k in range(10):
            wd, pids = tmp_path / f"wd{k}", tmp_path / f"pids{k}"
            pids.mkdir()
            proc = multiprocessing.get_context("fork").Process(target=_hold_the_lock_with_busy_workers, args=(str(wd), str(pids)))
            proc.start()
            runs.append((wd, pids, proc))
        deadline = time.monotonic() + 180
        for _, pids, proc in runs:
            while len(os.listdir(pids)) < 2:  # both workers forked (with the lock held) and busy
                assert proc.is_alive() and time.monotonic() < deadline, "a lock holder did not start its workers"
                time.sleep(0.05)
        for wd, pids, proc in runs:
            with pytest.raises(ConfigError, match="in use by another training run"):
                WorkDirLock(wd).acquire()  # held while the run lives
            os.kill(proc.pid, signal.SIGKILL)
            proc.join()
            assert proc.exitcode == -signal.SIGKILL
            for pid in map(int, os.listdir(pids)):
                os.kill(pid, 0)  # its workers are still alive: otherwise this round would prove nothing
            WorkDirLock(wd).acquire().release()  # no sleep: at once
    finally:
        for _, pids, proc in runs:
            proc.kill()
            for pid in map(int, os.listdir(pids)):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
