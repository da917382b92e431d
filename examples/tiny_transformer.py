"""A tiny transformer language model: dict batches, a ``loss(model, batch)``, the Hessian of one block.

Text: the Zen of Python (the standard library's ``this`` module), at the character level.
The model returns its own ``.loss`` when given ``labels`` (as Hugging Face models do), so
the problem's loss is ``loss(model, batch) = model(**batch).loss``; batches are dicts of
``input_ids`` and ``labels``. It is trained with dropout, then analysed in eval mode
(asking for train mode would be refused: dropout makes the loss random).

    .venv/bin/python examples/tiny_transformer.py           # writes runs/examples/lm/
    .venv/bin/python examples/tiny_transformer.py --quick
"""

from __future__ import annotations

import argparse
import codecs
import contextlib
import io
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

import landscape

with contextlib.redirect_stdout(io.StringIO()):  # importing `this` prints the text
    import this
TEXT = codecs.decode(this.s, "rot13")


class TinyLM(nn.Module):
    """Token and position embeddings, one causal transformer block, a linear head."""

    def __init__(
        self, vocab: int, context: int, width: int = 16, heads: int = 2, hidden: int = 32, dropout: float = 0.1
    ) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, width)
        self.position = nn.Parameter(torch.zeros(context, width))
        self.block = nn.TransformerEncoderLayer(width, heads, hidden, dropout=dropout, batch_first=True)
        self.head = nn.Linear(width, vocab)

    def forward(self, input_ids: torch.Tensor, labels: torch.Tensor | None = None) -> SimpleNamespace:
        t = input_ids.shape[1]
        mask = nn.Transformer.generate_square_subsequent_mask(t, device=input_ids.device)
        h = self.block(self.embed(input_ids) + self.position[:t], src_mask=mask, is_causal=True)
        logits = self.head(h)
        loss = None if labels is None else F.cross_entropy(logits.flatten(0, 1), labels.flatten())
        return SimpleNamespace(loss=loss, logits=logits)


def lm_loss(model: nn.Module, batch: dict) -> torch.Tensor:
    """Mean next-character cross-entropy of a batch (every sequence has the same length, so the
    toolkit's weighting of batches by their number of sequences gives the mean over all tokens)."""
    return model(**batch).loss


def sequences(context: int, stride: int, limit: int | None = None) -> tuple[list[str], torch.Tensor]:
    vocab = sorted(set(TEXT))
    ids = torch.tensor([vocab.index(c) for c in TEXT])
    windows = ids.unfold(0, context + 1, stride)[:limit]
    return vocab, windows


def batches(windows: torch.Tensor, size: int) -> list[dict]:
    return [{"input_ids": w[:, :-1], "labels": w[:, 1:]} for w in windows.split(size)]


def build(
    context: int = 32, width: int = 16, hidden: int = 32, steps: int = 300, limit: int | None = None
) -> tuple[TinyLM, list[dict]]:
    """A trained model and its data as a list of dict batches (the tests use a smaller one)."""
    torch.manual_seed(0)
    vocab, windows = sequences(context, context // 2, limit)
    model = TinyLM(len(vocab), context, width=width, hidden=hidden)
    data = batches(windows, 16)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for step in range(steps):
        optimizer.zero_grad()
        lm_loss(model, data[step % len(data)]).backward()
        optimizer.step()
    return model.eval(), data


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="runs/examples/lm")
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    out = Path(args.out)
    model, data = build(steps=60 if args.quick else 600)
    problem = landscape.Problem(model, data, lm_loss, label="tiny-lm")
    print(problem)
    print(f"loss {problem.evaluate('train')['loss']:.4f} nats per character")
    try:
        landscape.Problem(model, data, lm_loss, mode="train")
    except ValueError as e:
        print(f"train mode is refused: {e}")
    h = landscape.hessian(
        problem, top_k=3, trace=30 if args.quick else 99, out=out / "hessian.h5", overwrite=True, progress=False
    )
    print("whole model, top-3:", np.array2string(h.eigenvalues, precision=4), f"trace {h.trace:.3f}")
    attention = landscape.Problem(model, data, lm_loss, params=model.block.self_attn, label="tiny-lm attention")
    a = landscape.hessian(attention, top_k=3, out=out / "hessian_attention.h5", overwrite=True, progress=False)
    print(
        f"attention block only ({a.attrs['num_params']} parameters), top-3:",
        np.array2string(a.eigenvalues, precision=4),
    )
    s = landscape.surface(
        problem,
        "-1:1:11" if args.quick else "-1:1:21",
        "-1:1:11" if args.quick else "-1:1:21",
        out=out / "surface_2d.h5",
        overwrite=True,
        progress=False,
    )
    print(f"2-D surface: loss {np.nanmin(s.values['train_loss']):.4f} .. {np.nanmax(s.values['train_loss']):.4f}")


if __name__ == "__main__":
    main()
