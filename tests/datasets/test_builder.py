"""num_workers: auto, the worker policy: the cores the compute leaves free, decided per device."""

from __future__ import annotations

import pytest
import torch

from mlcls.datasets import build_dataloader
from mlcls.datasets import builder as builder_module
from mlcls.datasets.builder import auto_num_workers
from tests.conftest import tiny_config


@pytest.mark.parametrize(
    ("cores", "threads", "local_ranks", "device", "expected"),
    [
        (2, 2, 1, "cpu", 0),  # this machine: the 2 compute threads use both cores, a worker would preempt them
        (16, 16, 1, "cpu", 0),  # torch's default on a CPU box: one thread per core
        (16, 8, 1, "cpu", 8),  # cores the compute leaves free
        (32, 4, 1, "cpu", 8),  # at most 8
        (2, 1, 1, "cpu", 1),
        (16, 16, 1, "cuda", 8),  # a GPU run: the cores are free to decode, one kept for the loop, at most 8
        (4, 4, 1, "cuda", 3),
        (16, 1, 4, "cuda", 3),  # torchrun with 4 local ranks shares the 16 cores: 4 each, one kept
        (1, 1, 1, "cuda", 1),
        (2, 1, 2, "cpu", 0),  # DDP on the CPU, 2 ranks x 1 thread on 2 cores
    ],
)
def test_auto_workers_take_the_cores_the_compute_leaves(monkeypatch, cores, threads, local_ranks, device, expected):
    monkeypatch.setattr(builder_module.os, "sched_getaffinity", lambda pid: set(range(cores)), raising=False)
    monkeypatch.setattr(builder_module.torch, "get_num_threads", lambda: threads)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", str(local_ranks))
    n, why = auto_num_workers(torch.device(device))
    assert n == expected and why


def test_the_loader_resolves_auto_for_its_device_and_says_so(shapes_root, tmp_path, monkeypatch, mlcls_log):
    monkeypatch.setattr(builder_module.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    monkeypatch.setattr(builder_module.torch, "get_num_threads", lambda: 4)
    section = {**tiny_config(shapes_root, tmp_path)["train_dataloader"], "num_workers": "auto"}
    on_cpu = build_dataloader(section, device="cpu")
    on_gpu = build_dataloader(section, device="cuda")  # built, not iterated: no GPU needed
    assert (on_cpu.num_workers, on_gpu.num_workers) == (0, 3)
    records = {id(r): r for r in mlcls_log.records}.values()  # a record may reach the handler twice
    said = [r.getMessage().split(" (")[0] for r in records if r.getMessage().startswith("num_workers")]
    assert said == ["num_workers auto: 0", "num_workers auto: 3"]
    assert build_dataloader({**section, "num_workers": 1}, device="cpu").num_workers == 1  # a number is kept as given
