"""The process group mlcls asks for, and where its collectives run (the CUDA/NCCL branch, monkeypatched)."""

import pytest
import torch
import torch.distributed as dist

from mlcls.utils import dist as mdist


@pytest.fixture
def fake_init(monkeypatch):
    """Record what init_distributed asks torch for, on a machine that pretends to have GPUs."""
    calls = {}
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "set_device", lambda i: calls.setdefault("device", i))
    monkeypatch.setattr(dist, "is_initialized", lambda: False)
    monkeypatch.setattr(dist, "init_process_group", lambda **kw: calls.update(kw))
    monkeypatch.setattr(mdist, "get_rank", lambda: 0)
    monkeypatch.setattr(mdist, "get_world_size", lambda: 1)
    monkeypatch.setenv("LOCAL_RANK", "3")
    return calls


def test_with_cuda_the_group_serves_cpu_tensors_through_gloo_and_cuda_tensors_through_nccl(fake_init):
    mdist.init_distributed()
    # a plain "nccl" group has no CPU backend: the metric gather of CPU scores would fail
    assert fake_init["backend"] == "cpu:gloo,cuda:nccl"
    assert fake_init["device"] == 3  # each process on cuda:LOCAL_RANK


def test_the_configs_dist_backend_is_used_as_given(fake_init):
    mdist.init_distributed("nccl", timeout_s=60)
    assert fake_init["backend"] == "nccl" and fake_init["timeout"].total_seconds() == 60


def test_without_cuda_the_same_mapped_form_names_gloo_for_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert mdist.default_backend() == "cpu:gloo"


@pytest.mark.parametrize(
    "backend, moved",
    [("nccl", True), ("NCCL", True), ("cpu:gloo,cuda:nccl", False), ("gloo", False), ("cuda:nccl,cpu:gloo", False), ("cuda:nccl", True)],
)
def test_cpu_tensors_go_to_the_gpu_only_when_the_group_has_no_cpu_backend(monkeypatch, backend, moved):
    monkeypatch.setattr(dist, "get_backend", lambda *a: backend)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 1)
    expected = torch.device("cuda", 1) if moved else torch.device("cpu")
    assert mdist.comm_device(torch.device("cpu")) == expected
    assert mdist.comm_device(torch.device("cuda", 1)) == torch.device("cuda", 1)  # CUDA tensors stay


def test_helpers_are_identities_without_a_process_group():
    x = torch.arange(4.0)
    assert mdist.all_gather_cat(x) is x and mdist.all_reduce(x) is x and mdist.all_reduce_mean(x) is x
    mdist.shutdown()  # no group: nothing to do, no error
