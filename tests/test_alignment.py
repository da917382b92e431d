"""landscape.align: permutations derived from the model undone exactly, and weight matching against brute force."""

import copy
import itertools

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import landscape
from landscape._permutations import analyse
from landscape.alignment import permute_state, weight_matching
from landscape.trainers.models import create_model


class Transformer(nn.Module):
    """A pre-norm transformer block: embedding, multi-head attention and an MLP on residual connections."""

    def __init__(self, width: int = 16, heads: int = 4) -> None:
        super().__init__()
        self.embed = nn.Linear(5, width)
        self.ln1, self.ln2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.attn = nn.MultiheadAttention(width, heads, batch_first=True)
        self.fc1, self.fc2 = nn.Linear(width, 4 * width), nn.Linear(4 * width, width)
        self.head = nn.Linear(width, 3)

    def forward(self, x):
        x = self.embed(x)
        y = self.ln1(x)
        x = x + self.attn(y, y, y, need_weights=False)[0]
        x = x + self.fc2(F.gelu(self.fc1(self.ln2(x))))
        return self.head(x)


class GPT2(nn.Module):
    """Hugging Face's GPT-2 block between an input projection and a head."""

    def __init__(self) -> None:
        super().__init__()
        transformers = pytest.importorskip("transformers")
        from transformers.models.gpt2.modeling_gpt2 import GPT2Block

        config = transformers.GPT2Config(n_embd=32, n_head=4, attn_pdrop=0.0, resid_pdrop=0.0)
        self.inp, self.block, self.out = nn.Linear(5, 32), GPT2Block(config), nn.Linear(32, 3)

    def forward(self, x):
        h = self.block(self.inp(x))
        return self.out(h[0] if isinstance(h, tuple) else h)


def models():
    torch.manual_seed(0)
    yield "mlp", create_model("mlp", 10, 1, image_size=8, width=12), torch.randn(7, 1, 8, 8)
    yield "cnn+bn", create_model("small_cnn", 10, 3, width=4), torch.randn(7, 3, 8, 8)
    yield "resnet", create_model("resnet18", 10, 3, width=4), torch.randn(3, 3, 16, 16)
    yield "transformer", Transformer(), torch.randn(4, 6, 5)
    yield "gpt2", GPT2(), torch.randn(4, 6, 5)


def randomly_permuted(model: nn.Module, seed: int) -> tuple[nn.Module, int]:
    """A copy of ``model`` with every permutable unit group shuffled; (copy, units moved)."""
    spec, analysis = analyse(model)
    g = torch.Generator().manual_seed(seed)
    perms = [torch.randperm(group.size, generator=g) for group in spec.groups]
    shuffled = copy.deepcopy(model)
    shuffled.load_state_dict(permute_state(spec, model.state_dict(), perms, analysis.canonical))
    return shuffled, sum(int((p != torch.arange(len(p))).sum()) for p in perms)


@pytest.mark.parametrize("method", ["weights", "activations"])
@pytest.mark.parametrize("name,model,x", list(models()), ids=lambda v: v if isinstance(v, str) else "")
def test_a_random_permutation_is_undone_exactly(name, model, x, method):
    model.eval()
    for m in model.modules():  # statistics that differ per channel, so that a wrong permutation shows
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.normal_()
            m.running_var.uniform_(0.5, 2.0)
    shuffled, moved = randomly_permuted(model, seed=1)
    assert moved > 10
    with torch.no_grad():
        torch.testing.assert_close(shuffled(x), model(x), atol=1e-5, rtol=1e-5)  # the same function
        assert any((shuffled.state_dict()[k] != v).any() for k, v in model.state_dict().items())
        aligned = landscape.align(model, shuffled, method=method, data=x)
        for k, v in model.state_dict().items():
            torch.testing.assert_close(aligned.state_dict()[k], v, atol=1e-6, rtol=0)
        torch.testing.assert_close(aligned(x), shuffled(x), atol=1e-5, rtol=1e-5)


def test_attention_heads_move_as_whole_heads():
    spec, _ = analyse(Transformer(width=16, heads=4))
    heads = [g for g in spec.groups if g.size == 4]
    assert len(heads) == 1
    axes = {(a.name, a.dim): (a.repeat, a.block) for a in heads[0].axes}
    assert axes == {
        ("attn.in_proj_weight", 0): (3, 4),
        ("attn.in_proj_bias", 0): (3, 4),
        ("attn.out_proj.weight", 1): (1, 4),
    }
    residual = [g for g in spec.groups if g.size == 16]
    assert len(residual) == 1  # the embedding, both branches' outputs and the LayerNorms share one permutation
    names = {a.name for a in residual[0].axes}
    assert {"embed.weight", "ln1.weight", "ln2.bias", "attn.out_proj.bias", "fc2.weight", "head.weight"} <= names


def test_weight_matching_equals_brute_force_on_a_tiny_mlp():
    torch.manual_seed(3)
    make = lambda: nn.Sequential(nn.Linear(3, 5), nn.ReLU(), nn.Linear(5, 2))  # noqa: E731
    a, b = make(), make()
    spec, _ = analyse(a)
    assert [g.size for g in spec.groups] == [5]
    (found,) = weight_matching(spec, dict(a.named_parameters()), dict(b.named_parameters()))
    sa, sb = a.state_dict(), b.state_dict()

    def overlap(p):  # sum <W_a, P W_b> over every tensor the hidden units touch
        p = torch.tensor(p)
        return float(
            (sa["0.weight"] * sb["0.weight"][p]).sum()
            + (sa["0.bias"] * sb["0.bias"][p]).sum()
            + (sa["2.weight"] * sb["2.weight"][:, p]).sum()
        )

    best = max(itertools.permutations(range(5)), key=overlap)
    assert found.tolist() == list(best)


def test_what_cannot_be_permuted_is_left_in_place_and_named():
    class Odd(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b, self.c = nn.Linear(4, 6), nn.Linear(6, 6), nn.Linear(6, 2)

        def forward(self, x):
            h = torch.relu(self.a(x))
            h = torch.cumsum(h, dim=-1)  # mixes units in order: a permutation would change the function
            return self.c(torch.relu(self.b(h)))

    model = Odd()
    shuffled, _ = randomly_permuted(model, seed=0)
    spec, _ = analyse(model)
    assert [g.size for g in spec.groups] == [6]  # only b's outputs
    with pytest.warns(UserWarning, match="cumsum"):
        aligned = landscape.align(model, shuffled, data=torch.randn(5, 4))
    torch.testing.assert_close(aligned.state_dict()["a.weight"], model.state_dict()["a.weight"])


def test_bad_input_is_one_line():
    class Branchy(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Linear(4, 4)

        def forward(self, x):
            return self.a(x) if x.sum() > 0 else -x  # data-dependent: fx cannot trace it

    for model_a, model_b, match in [
        (nn.Linear(4, 3), nn.Linear(4, 2), "differ in shape"),
        (nn.Linear(4, 3), nn.Sequential(nn.Linear(4, 3)), "differ in their tensors"),
        (Branchy(), Branchy(), "cannot trace Branchy"),
    ]:
        with pytest.raises(ValueError, match=match) as e:
            landscape.align(model_a, model_b)
        assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match="needs data"):
        landscape.align(nn.Linear(4, 3), nn.Linear(4, 3), method="activations")
