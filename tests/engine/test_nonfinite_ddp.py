"""The non-finite guard under DDP: a NaN on one rank only makes every rank skip that step."""

import json

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, TensorDataset

from mlcls.engine import Trainer
from tests.ddp import spawn
from tests.engine.test_trainer import TinyModel


def worker(rank, world, work_dir, out):
    g = torch.Generator().manual_seed(rank)
    x = torch.randn(16, 4, generator=g)
    y = (torch.rand(16, 3, generator=g) > 0.5).float()
    if rank == 1:
        x[5] = float("nan")  # only rank 1 meets a bad sample, in its second batch
    torch.manual_seed(0)
    model = torch.nn.parallel.DistributedDataParallel(TinyModel())
    loader = DataLoader(TensorDataset(x, y), batch_size=4)
    trainer = Trainer(model, torch.optim.SGD(model.parameters(), lr=0.5), loader, 2, skip_nonfinite=2, work_dir=work_dir)
    trainer.train()  # each epoch has one bad step on rank 1: 2 skips allowed
    weights = model.module.fc.weight.detach()
    gathered = [torch.zeros_like(weights) for _ in range(world)]
    dist.all_gather(gathered, weights)
    if rank == 0:
        with open(out, "w") as f:
            json.dump({"skipped": trainer.nonfinite_steps, "same": all(torch.equal(gathered[0], w) for w in gathered),
                       "finite": bool(torch.isfinite(weights).all()), "iter": trainer.iter}, f)  # fmt: skip


def test_a_nan_on_one_rank_is_skipped_by_all_ranks(tmp_path):
    out = tmp_path / "res.json"
    spawn(worker, 2, (str(tmp_path / "wd"), str(out)))
    got = json.loads(out.read_text())
    # rank 0 never saw a NaN, yet counted the skipped steps: the ranks agreed (no deadlock, no divergence)
    assert got == {"skipped": 2, "same": True, "finite": True, "iter": 8}
