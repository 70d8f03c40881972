"""The non-finite guard under DDP: a NaN on one rank only makes every rank skip that step."""

import json
from datetime import timedelta

import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def worker(rank, world, store, out):
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world, timeout=timedelta(seconds=30))
    # a rank that skips alone would leave the other waiting in a collective: fail, do not hang
    from torch.utils.data import DataLoader, TensorDataset

    from mlcls.engine import Trainer
    from tests.engine.test_trainer import TinyModel

    g = torch.Generator().manual_seed(rank)
    x = torch.randn(16, 4, generator=g)
    y = (torch.rand(16, 3, generator=g) > 0.5).float()
    if rank == 1:
        x[5] = float("nan")  # only rank 1 meets a bad sample, in its second batch
    torch.manual_seed(0)
    model = torch.nn.parallel.DistributedDataParallel(TinyModel())
    loader = DataLoader(TensorDataset(x, y), batch_size=4)
    trainer = Trainer(model, torch.optim.SGD(model.parameters(), lr=0.5), loader, 2, skip_nonfinite=2, work_dir=store + "_wd")
    trainer.train()  # each epoch has one bad step on rank 1: 2 skips allowed
    weights = model.module.fc.weight.detach()
    gathered = [torch.zeros_like(weights) for _ in range(world)]
    dist.all_gather(gathered, weights)
    if rank == 0:
        with open(out, "w") as f:
            json.dump({"skipped": trainer.nonfinite_steps, "same": all(torch.equal(gathered[0], w) for w in gathered),
                       "finite": bool(torch.isfinite(weights).all()), "iter": trainer.iter}, f)  # fmt: skip
    dist.destroy_process_group()


def test_a_nan_on_one_rank_is_skipped_by_all_ranks(tmp_path):
    out = tmp_path / "res.json"
    mp.spawn(worker, args=(2, str(tmp_path / "store"), str(out)), nprocs=2, join=True)
    got = json.loads(out.read_text())
    # rank 0 never saw a NaN, yet counted the skipped steps: the ranks agreed (no deadlock, no divergence)
    assert got == {"skipped": 2, "same": True, "finite": True, "iter": 8}
