import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def runs(tmp_path_factory):
    """Two small finished runs on digits (ERM and SAM, small_cnn, 3 epochs, a checkpoint every epoch)."""
    from trainers import TrainConfig, train

    root = tmp_path_factory.mktemp("runs")
    for method in ("erm", "sam"):
        train(TrainConfig(method=method, epochs=3, seed=1), root / method, progress=False, log=lambda line: None)
    return root
