"""Helper for tests/test_distributed.py: trains several runs in one process (or one torchrun job) in float64.

    python tests/distributed_train.py OUT METHOD[,OPTION=VALUE...] ...
    torchrun --nproc_per_node=2 tests/distributed_train.py OUT METHOD ...

In float64 the order of float sums (one batch on one process, two shards on two) changes
results by ~1e-16, far below what the test resolves, even through max-pooling near-ties
that flip in float32 and then grow over a training run.
"""

import sys
from pathlib import Path

import torch

from landscape._system.ranks import close_group
from landscape.trainers.train import TrainConfig, train

torch.set_default_dtype(torch.float64)
out = Path(sys.argv[1])
for spec in sys.argv[2:]:
    method, *options = spec.split(",")
    hparams = {k: int(v) for k, v in (o.split("=") for o in options)}
    train(
        TrainConfig(method=method, model="small_cnn", sync_bn=True, epochs=2, lr=0.1, hparams=hparams),
        out / method,
        progress=False,
        log=lambda line: None,
    )
close_group()
