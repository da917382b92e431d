"""Model registry: ``create_model(name, num_classes, in_channels, **kw)``.

Architectures follow the reference code of the seeds (AMP repo's PreActResNet18, VGG16-BN
and WRN; a CIFAR ResNet18 as in the DAMP repo) with adaptive average pooling, so the
residual nets also run on small inputs such as the 8x8 digits. A checkpoint stores the
registry name and the keyword arguments, which is all it takes to rebuild the model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn as nn

from landscape._system.device import check_memory


@dataclass(frozen=True)
class ModelInfo:
    name: str
    build: Callable[..., nn.Module]
    description: str
    min_image_size: int = 1


MODELS: dict[str, ModelInfo] = {}
MAX_PARAMETERS = 2_000_000_000  # a bundled model built from arguments (a checkpoint's or --model-arg) is at most this


def register_model(name: str, description: str, min_image_size: int = 1):
    def wrap(fn: Callable[..., nn.Module]):
        if name in MODELS:
            raise ValueError(f"model {name!r} is registered twice")
        MODELS[name] = ModelInfo(name, fn, description, min_image_size)
        return fn

    return wrap


def create_model(name: str, num_classes: int, in_channels: int, **kwargs) -> nn.Module:
    """Build a registered model.

    Args:
        name: one of :data:`MODELS` (``mlp``, ``small_cnn``, ``resnet18``, ``preactresnet18``, ``vgg16``, ``wrn28_10``).
        num_classes: outputs of the classifier.
        in_channels: channels of the input images.
        kwargs: the model's own options (e.g. ``width``, ``depth``); ``None`` values are dropped (the model's default
            applies).

    Returns:
        The model (its parameter count checked against the memory free before it is allocated).

    Raises:
        ValueError: an unknown model, options it does not take, or a size that does not fit in memory.
    """
    info = MODELS.get(name)
    if info is None:
        raise ValueError(f"unknown model {name!r}; choose from {', '.join(sorted(MODELS))}")
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    for key, value in {"num_classes": num_classes, "in_channels": in_channels, **kwargs}.items():
        if isinstance(value, bool):
            continue
        if not isinstance(value, (int, float)) or (isinstance(value, float) and key != "dropout"):
            raise ValueError(f"model {name!r}: {key}={value!r} is not an integer")
        if key == "dropout" and not 0 <= value < 1:
            raise ValueError(f"model {name!r}: dropout={value} is not in [0, 1)")
        if key != "dropout" and value < 1:
            raise ValueError(f"model {name!r}: {key}={value} must be >= 1")
    try:
        with torch.device("meta"):  # counted before a byte is allocated: a width read from a file may be huge
            size = sum(
                p.numel() for p in info.build(num_classes=num_classes, in_channels=in_channels, **kwargs).parameters()
            )
        if size > MAX_PARAMETERS:
            raise ValueError(f"model {name!r} with {kwargs}: {size:,} parameters, more than {MAX_PARAMETERS:,}")
        check_memory(f"model {name!r} with {kwargs} ({size:,} parameters)", 4 * size)
        return info.build(num_classes=num_classes, in_channels=in_channels, **kwargs)
    except TypeError as e:
        raise ValueError(f"model {name!r}: bad arguments {kwargs} ({e})") from None


def _conv_bn(cin: int, cout: int, bias: bool = False) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=bias), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


@register_model("mlp", "fully connected ReLU net (needs image_size)")
def mlp(num_classes: int, in_channels: int, image_size: int = 8, width: int = 128, depth: int = 2) -> nn.Module:
    dims = [in_channels * image_size * image_size] + [width] * depth
    layers: list[nn.Module] = [nn.Flatten()]
    for a, b in zip(dims[:-1], dims[1:]):
        layers += [nn.Linear(a, b), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers, nn.Linear(dims[-1], num_classes))


@register_model("small_cnn", "3-conv CNN with BatchNorm, CPU-scale")
def small_cnn(num_classes: int, in_channels: int, width: int = 16) -> nn.Module:
    w = width
    return nn.Sequential(
        *_conv_bn(in_channels, w),
        *_conv_bn(w, 2 * w),
        nn.MaxPool2d(2),
        *_conv_bn(2 * w, 4 * w),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4 * w, num_classes),
    )


class BasicBlock(nn.Module):
    """Post-activation ResNet block (He et al. 2016a), projection shortcut when the shape changes."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class PreActBlock(nn.Module):
    """Pre-activation block as in the AMP repo: one BN-ReLU feeds both branches; convs keep their bias."""

    def __init__(self, cin: int, cout: int, stride: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1)
        self.bn2 = nn.BatchNorm2d(cout)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = nn.Conv2d(cin, cout, 1, stride) if stride != 1 or cin != cout else None

    def forward(self, x):
        pre = self.relu(self.bn1(x))
        skip = self.shortcut(pre) if self.shortcut is not None else x
        out = self.conv2(self.dropout(self.relu(self.bn2(self.conv1(pre)))))
        return out + skip


def _stages(block: Callable[..., nn.Module], cin: int, widths: list[int], blocks: list[int], **kw) -> nn.Sequential:
    layers = []
    for i, (w, n) in enumerate(zip(widths, blocks)):
        for j in range(n):
            layers.append(block(cin, w, stride=2 if (i > 0 and j == 0) else 1, **kw))
            cin = w
    return nn.Sequential(*layers)


def _init_conv_bn(model: nn.Module) -> nn.Module:
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear) and m.bias is not None:
            nn.init.zeros_(m.bias)
    return model


@register_model("resnet18", "CIFAR ResNet18 (3x3 stem, no max-pool)")
def resnet18(num_classes: int, in_channels: int, width: int = 64) -> nn.Module:
    widths = [width, 2 * width, 4 * width, 8 * width]
    return _init_conv_bn(
        nn.Sequential(
            nn.Conv2d(in_channels, width, 3, 1, 1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
            _stages(BasicBlock, width, widths, [2, 2, 2, 2]),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(widths[-1], num_classes),
        )
    )


@register_model("preactresnet18", "PreActResNet18 as in the AMP reference code")
def preactresnet18(num_classes: int, in_channels: int, width: int = 64, dropout: float = 0.0) -> nn.Module:
    widths = [width, 2 * width, 4 * width, 8 * width]
    return _init_conv_bn(
        nn.Sequential(
            nn.Conv2d(in_channels, width, 3, 1, 1, bias=False),
            _stages(PreActBlock, width, widths, [2, 2, 2, 2], dropout=dropout),
            nn.BatchNorm2d(widths[-1]),
            nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Dropout(dropout),
            nn.Linear(widths[-1], num_classes),
        )
    )


@register_model("vgg16", "VGG16 with BatchNorm (AMP reference code); needs 32x32 inputs", min_image_size=32)
def vgg16(
    num_classes: int, in_channels: int, width: int = 64, classifier_width: int = 4096, dropout: float = 0.0
) -> nn.Module:
    cfg = [1, 1, "M", 2, 2, "M", 4, 4, 4, "M", 8, 8, 8, "M", 8, 8, 8, "M"]
    layers: list[nn.Module] = []
    cin = in_channels
    for v in cfg:
        if not isinstance(v, int):  # "M"
            layers.append(nn.MaxPool2d(2))
        else:
            layers += _conv_bn(cin, v * width, bias=True)
            cin = v * width
    return _init_conv_bn(
        nn.Sequential(
            *layers,
            nn.Flatten(),
            nn.Linear(cin, classifier_width),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(classifier_width, classifier_width),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(classifier_width, num_classes),
        )
    )


class WideBlock(nn.Module):
    """WRN block: BN-ReLU-conv-dropout-BN-ReLU-conv, 1x1 projection when the shape changes."""

    def __init__(self, cin: int, cout: int, stride: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, 1, 1, bias=False)
        self.dropout = nn.Dropout(dropout)
        self.bn2 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, stride, 1, bias=False)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = nn.Conv2d(cin, cout, 1, stride, bias=False) if stride != 1 or cin != cout else None

    def forward(self, x):
        out = self.conv1(self.relu(self.bn1(x)))
        out = self.conv2(self.relu(self.bn2(self.dropout(out))))
        return out + (self.shortcut(x) if self.shortcut is not None else x)


@register_model("wrn28_10", "Wide ResNet (depth 28, widen 10 by default; both configurable)")
def wrn(num_classes: int, in_channels: int, depth: int = 28, widen: int = 10, dropout: float = 0.0) -> nn.Module:
    if (depth - 4) % 6 != 0 or depth < 10:
        raise ValueError(f"WRN depth must be 6n+4 (>= 10), got {depth}")
    n = (depth - 4) // 6
    widths = [16 * widen, 32 * widen, 64 * widen]
    return _init_conv_bn(
        nn.Sequential(
            nn.Conv2d(in_channels, 16, 3, 1, 1, bias=False),
            _stages(WideBlock, 16, widths, [n, n, n], dropout=dropout),
            nn.BatchNorm2d(widths[-1]),
            nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(widths[-1], num_classes),
        )
    )


__all__ = ["MODELS", "create_model"]
