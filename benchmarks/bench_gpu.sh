#!/usr/bin/env bash
# The GPU checks in one run (under 5 minutes on one GPU): the training-throughput table of
# docs/benchmarks.md with AMP on (fp16 + GradScaler), then the tests whose CUDA branches the CPU
# suite can only reach by monkeypatching, run for real.
#
#   bash benchmarks/bench_gpu.sh            # prints the table; exit status of the tests
#
# Needs a CUDA device and torch/torchvision with CUDA; installs mlcls (editable) and the test
# extras when they are missing. The data is the bundled demo, generated on first use.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1
python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'bench_gpu.sh: no CUDA device visible to torch')"
python -c "import mlcls" 2>/dev/null || python -m pip install -q -e ".[tests]"
python tools/make_demo_data.py >/dev/null
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
# 4,096 images per epoch, 3 epochs (the first is warm-up), one round: the script is meant to take about
# 5 minutes in all (not yet timed on a GPU)
python benchmarks/bench_train.py --device cuda --amp --images 4096 --epochs 3 --rounds 1 \
    --ways compute_only plain mlcls mlcls_workers mlcls_channels_last mlcls_cache
# the same images as JPEG: decoding in the workers against nvjpeg on the GPU (decode_on_device)
python benchmarks/bench_train.py --device cuda --amp --images 4096 --epochs 3 --rounds 1 --jpeg \
    --ways compute_only plain mlcls mlcls_decode_on_device
# the CUDA paths: fp16 AMP, the non-finite guard (fused optimizer, counts read late), DDP on NCCL where 2 GPUs exist
python -m pytest -q -p no:cacheprovider tests/engine/test_engine_features.py tests/engine/test_nonfinite_ddp.py -k "amp or nonfinite or fused or late"
# decode_on_device with nvjpeg: the batch must match the CPU decoding within a grey level or two
python -m pytest -q -p no:cacheprovider tests/datasets/test_device_decode.py
