"""Trainings on one machine share its cores: each uses cores // trainings threads unless told otherwise."""

from __future__ import annotations

import subprocess
import sys

import torch

from mlcls.utils import cores
from mlcls.utils.cores import CoreShare, worker_env


def test_a_training_gives_up_threads_while_another_runs_and_takes_them_back(tmp_path, monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv(cores.CORES_ENV, raising=False)
    monkeypatch.setattr(cores, "machine_cores", lambda: 4)
    before = torch.get_num_threads()
    torch.set_num_threads(4)
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (tmp_path / "999999999").write_text("")  # a training killed long ago: its pid is gone
        with CoreShare(tmp_path) as share:
            assert share.trainings() == 1 and torch.get_num_threads() == 4  # alone: every core
            assert not (tmp_path / "999999999").exists()  # the stale entry was removed
            (tmp_path / str(other.pid)).write_text(cores.process_start_time(other.pid))  # a second training registers
            assert share.adjust() == 2 and torch.get_num_threads() == 2
            (tmp_path / str(other.pid)).write_text("1")  # a pid reused by another process is not a training
            assert share.adjust() == 4
            (tmp_path / str(other.pid)).write_text(cores.process_start_time(other.pid))
            assert share.adjust() == 2
            other.kill()
            other.wait()
            assert share.adjust() == 4 and torch.get_num_threads() == 4  # it ended: the cores come back
            assert (tmp_path / str(__import__("os").getpid())).is_file()
        assert not list(tmp_path.iterdir())  # unregistered on leaving
    finally:
        other.kill()
        torch.set_num_threads(before)


def test_threads_set_by_the_user_or_a_pool_stand(tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    monkeypatch.setattr(cores, "machine_cores", lambda: 4)
    before = torch.get_num_threads()
    torch.set_num_threads(3)
    try:
        (tmp_path / "1").write_text("")  # pid 1 is always running: but no start time recorded, so it counts
        with CoreShare(tmp_path) as share:
            assert share.trainings() == 2 and share.adjust() == 3 and torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(before)
    env = worker_env(2, 1, gpus=2)
    assert env["OMP_NUM_THREADS"] == env[cores.CORES_ENV] == "2" and env["CUDA_VISIBLE_DEVICES"] == "1"
    assert worker_env(8, 0)["OMP_NUM_THREADS"] == "1" and "CUDA_VISIBLE_DEVICES" not in worker_env(8, 0)
    monkeypatch.setenv(cores.CORES_ENV, "1")
    assert cores.usable_cores() == 1  # a worker's DataLoader counts its share, not the machine
