import os
import shutil

import pytest
import torch


@pytest.fixture(scope="session", autouse=True)
def _corruption_cache(tmp_path_factory):
    """Generated corruptions are cached in a temporary folder, never in the user's ~/.cache."""
    os.environ["LANDSCAPE_CACHE"] = str(tmp_path_factory.mktemp("cache"))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def runs(tmp_path_factory):
    """Two small finished runs on digits (ERM and SAM, small_cnn, 3 epochs, a checkpoint every epoch)."""
    from landscape.trainers.train import TrainConfig, train

    root = tmp_path_factory.mktemp("runs")
    for method in ("erm", "sam"):
        train(TrainConfig(method=method, epochs=3, seed=1), root / method, progress=False, log=lambda line: None)
    return root


@pytest.fixture(scope="session")
def analysed(runs, tmp_path_factory):
    """Copies of the ERM and SAM runs with a 2-D surface (train+test), a Hessian, a sweep and a robustness file
    (against ERM) written into each."""
    import shutil

    import numpy as np

    from landscape._jobs import EvalOptions, hessian_analysis, random_surface, robustness_analysis, sweep_analysis

    root = tmp_path_factory.mktemp("analysed")
    opts = EvalOptions(samples=100, device="cpu", progress=False)
    for method in ("erm", "sam"):
        run = root / method
        shutil.copytree(runs / method, run, ignore=shutil.ignore_patterns("checkpoints"))
        ckpt = run / "final.pt"
        random_surface(
            ckpt,
            run / "surface_2d.h5",
            np.linspace(-1, 1, 5),
            np.linspace(-1, 1, 3),
            EvalOptions(splits=["train", "test"], samples=100, device="cpu", progress=False),
        )
        hessian_analysis(ckpt, run / "hessian.h5", opts, top_k=2, trace_matvecs=6)
        sweep_analysis(ckpt, run / "sweep.h5", np.array([0.0, 0.05, 0.2]), opts, kinds=["random", "adversarial"])
        robustness_analysis(
            ckpt, run / "robustness.h5", ["contrast", "fog"], [1, 5], opts, baseline=root / "erm" / "final.pt"
        )
    return root


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROME_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE localhost , EXCLUDE 127.0.0.1",
]


@pytest.fixture(scope="module")
def browser():
    """Headless Debian Chromium through Playwright (the explorer's browser tests); skipped where there is none."""
    if CHROMIUM is None:
        pytest.skip("no Chromium on this machine (Debian: apt-get install chromium chromium-driver; make test tries)")
    playwright = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    with playwright.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROME_ARGS)
        yield b
        b.close()
