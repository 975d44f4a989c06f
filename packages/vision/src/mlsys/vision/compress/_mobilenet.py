"""MobileNetV3 (Howard et al. 2019) written for this package, with an input-size-aware stem.

torchvision cannot be installed beside the pinned CPU torch, so the network is written here:
inverted-residual blocks (1x1 expansion, depthwise kxk, squeeze-and-excitation, 1x1 projection),
hard-swish / ReLU activations, the "small" and "large" block tables of the paper, a width
multiplier applied to every channel count (rounded to multiples of 8 as in the reference), and a
classifier of global pooling, a 1x1 "last" convolution, a hidden linear layer and the logits.

For small inputs (Fashion-MNIST's 28x28) the stem and the later stride-2 blocks are adapted so the
network does not reduce the image to a single pixel: the stem has stride 1 below 112 px and a
stride-2 block keeps stride 1 once the feature map would drop below ``min_feature_size``.

Feature taps: :meth:`MobileNetV3.forward_features` returns the outputs of chosen blocks
(``(B, C, H, W)`` maps) beside the logits, for feature distillation.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mlsys.common.errors import DeviceMismatchError, DimensionMismatchError, InvalidInputError

__all__ = ["MobileNetV3", "MobileNetV3Config", "MobileNetV3Output", "count_parameters"]

# (kernel, expanded channels, out channels, squeeze-excite, activation, stride): Table 1/2 of the paper
_SMALL: tuple[tuple[int, int, int, bool, str, int], ...] = (
    (3, 16, 16, True, "relu", 2),
    (3, 72, 24, False, "relu", 2),
    (3, 88, 24, False, "relu", 1),
    (5, 96, 40, True, "hswish", 2),
    (5, 240, 40, True, "hswish", 1),
    (5, 240, 40, True, "hswish", 1),
    (5, 120, 48, True, "hswish", 1),
    (5, 144, 48, True, "hswish", 1),
    (5, 288, 96, True, "hswish", 2),
    (5, 576, 96, True, "hswish", 1),
    (5, 576, 96, True, "hswish", 1),
)
_LARGE: tuple[tuple[int, int, int, bool, str, int], ...] = (
    (3, 16, 16, False, "relu", 1),
    (3, 64, 24, False, "relu", 2),
    (3, 72, 24, False, "relu", 1),
    (5, 72, 40, True, "relu", 2),
    (5, 120, 40, True, "relu", 1),
    (5, 120, 40, True, "relu", 1),
    (3, 240, 80, False, "hswish", 2),
    (3, 200, 80, False, "hswish", 1),
    (3, 184, 80, False, "hswish", 1),
    (3, 184, 80, False, "hswish", 1),
    (3, 480, 112, True, "hswish", 1),
    (3, 672, 112, True, "hswish", 1),
    (5, 672, 160, True, "hswish", 2),
    (5, 960, 160, True, "hswish", 1),
    (5, 960, 160, True, "hswish", 1),
)
_TABLES = {"small": (_SMALL, 576, 1024), "large": (_LARGE, 960, 1280)}


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round ``value`` to the nearest multiple of ``divisor`` (never below ``min_value`` or 90% of ``value``),
    the reference MobileNet channel rounding.

    Example:
        >>> make_divisible(16 * 0.35), make_divisible(576 * 0.5)
        (8, 288)
    """
    for name, v in (("value", value), ("divisor", divisor), ("min_value", min_value)):
        if v is None and name == "min_value":
            continue
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v < 1e9:
            raise InvalidInputError(f"make_divisible: {name} must be a positive number, got {v!r}")
    divisor = int(divisor)
    min_value = divisor if min_value is None else int(min_value)
    out = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if out < 0.9 * value:
        out += divisor
    return out


@dataclass(frozen=True)
class MobileNetV3Config:
    """Configuration of a :class:`MobileNetV3`.

    Args:
        arch: ``"small"`` or ``"large"`` (the paper's block tables).
        width_mult: multiplier of every channel count (stem, expansions, outputs, last layers).
        img_size: input height and width (square inputs); drives the stem stride and where
            stride-2 blocks stop downsampling.
        in_chans: input channels.
        num_classes: classifier outputs.
        depth: use only the first ``depth`` blocks of the table (None = all).
        min_feature_size: a stride-2 block keeps stride 1 when its output would be smaller.
        last_channels: width of the last 1x1 convolution (None = the table's, times width_mult).
        hidden_channels: width of the classifier's hidden layer (None = the table's; 0 = no hidden
            layer: the logits read the pooled last convolution directly).
        dropout: dropout before the logits (training only).
        se_ratio: squeeze-excite bottleneck ratio (relative to the expanded channels).
        divisor: channel counts are rounded to multiples of this.

    Example:
        >>> cfg = MobileNetV3Config.fashion_mnist()
        >>> cfg.arch, cfg.img_size, cfg.in_chans
        ('small', 28, 1)
    """

    arch: str = "small"
    width_mult: float = 1.0
    img_size: int = 224
    in_chans: int = 3
    num_classes: int = 1000
    depth: int | None = None
    min_feature_size: int = 4
    last_channels: int | None = None
    hidden_channels: int | None = None
    dropout: float = 0.2
    se_ratio: float = 0.25
    divisor: int = 8

    def __post_init__(self) -> None:
        if self.arch not in _TABLES:
            raise InvalidInputError(
                f"MobileNetV3Config.arch must be one of {sorted(_TABLES)}, got {self.arch!r}"
            )
        if isinstance(self.width_mult, bool) or not isinstance(self.width_mult, (int, float)):
            raise InvalidInputError(f"MobileNetV3Config.width_mult must be a number, got {self.width_mult!r}")
        if not 0 < self.width_mult <= 4:
            raise InvalidInputError(
                f"MobileNetV3Config.width_mult must be in (0, 4], got {self.width_mult!r}"
            )
        for name in ("img_size", "in_chans", "num_classes", "min_feature_size", "divisor"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
                raise InvalidInputError(f"MobileNetV3Config.{name} must be a positive int, got {v!r}")
        if self.img_size > 4096:
            raise InvalidInputError(f"MobileNetV3Config.img_size must be <= 4096, got {self.img_size}")
        n = len(_TABLES[self.arch][0])
        if self.depth is not None and (
            isinstance(self.depth, bool) or not isinstance(self.depth, int) or not 1 <= self.depth <= n
        ):
            raise InvalidInputError(
                f"MobileNetV3Config.depth must be None or an int in [1, {n}], got {self.depth!r}"
            )
        for name in ("last_channels", "hidden_channels"):
            v = getattr(self, name)
            if v is not None and (
                isinstance(v, bool) or not isinstance(v, int) or v < (1 if name == "last_channels" else 0)
            ):
                raise InvalidInputError(
                    f"MobileNetV3Config.{name} must be None or a non-negative int, got {v!r}"
                )
        if not isinstance(self.dropout, (int, float)) or not 0.0 <= self.dropout < 1.0:
            raise InvalidInputError(f"MobileNetV3Config.dropout must be in [0, 1), got {self.dropout!r}")
        if not isinstance(self.se_ratio, (int, float)) or not 0.0 < self.se_ratio <= 1.0:
            raise InvalidInputError(f"MobileNetV3Config.se_ratio must be in (0, 1], got {self.se_ratio!r}")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict of the fields."""
        return asdict(self)

    @classmethod
    def fashion_mnist(cls, arch: str = "small", width_mult: float = 1.0, **kw: Any) -> MobileNetV3Config:
        """The 28x28x1, 10-class student of the Fashion-MNIST ViT: the first 4 blocks of
        MobileNetV3-small at full width, downsampling stopped at 7x7, a 64-wide last convolution
        and no hidden classifier layer: 27,274 parameters, 8.5x fewer than the teacher's 232,170
        (``benchmarks/vision/README.md`` has the latency and accuracy side by side)."""
        base: dict[str, Any] = dict(
            arch=arch,
            width_mult=width_mult,
            img_size=28,
            in_chans=1,
            num_classes=10,
            depth=4,
            min_feature_size=7,
            last_channels=64,
            hidden_channels=0,
            dropout=0.1,
        )
        base.update(kw)
        return cls(**base)

    def blocks(self) -> list[tuple[int, int, int, bool, str, int]]:
        """The block table after the width multiplier and the input-size-aware strides:
        ``(kernel, expanded, out, se, activation, stride)`` per block."""
        table = _TABLES[self.arch][0][: self.depth]
        size = self.stem_output_size
        out: list[tuple[int, int, int, bool, str, int]] = []
        for k, exp, c, se, act, s in table:
            if s == 2 and math.ceil(size / 2) < self.min_feature_size:
                s = 1
            size = math.ceil(size / s)
            out.append((k, self._ch(exp), self._ch(c), se, act, s))
        return out

    def _ch(self, c: int) -> int:
        return make_divisible(c * self.width_mult, self.divisor)

    @property
    def stem_stride(self) -> int:
        """2 at ImageNet-like sizes (>= 112 px), 1 for small images."""
        return 2 if self.img_size >= 112 else 1

    @property
    def stem_output_size(self) -> int:
        """Side of the feature map after the stem (``ceil(img_size / stem_stride)``)."""
        return math.ceil(self.img_size / self.stem_stride)

    @property
    def stem_channels(self) -> int:
        """Output channels of the stem (16, scaled by the width multiplier)."""
        return self._ch(16)

    @property
    def feature_sizes(self) -> list[int]:
        """Spatial side of each block's output."""
        size = self.stem_output_size
        sizes = []
        for *_, s in self.blocks():
            size = math.ceil(size / s)
            sizes.append(size)
        return sizes


class HardSigmoid(nn.Module):
    """``relu6(x + 3) / 6`` (exported to ONNX as HardSigmoid)."""

    def forward(self, x: Tensor) -> Tensor:
        return F.hardsigmoid(x)


def _act(name: str) -> nn.Module:
    return nn.Hardswish() if name == "hswish" else nn.ReLU()


class ConvBNAct(nn.Sequential):
    """Conv2d (no bias) -> BatchNorm2d -> activation (or none)."""

    def __init__(
        self, c_in: int, c_out: int, k: int, stride: int = 1, groups: int = 1, act: str | None = "relu"
    ) -> None:
        layers: list[nn.Module] = [
            nn.Conv2d(c_in, c_out, k, stride, (k - 1) // 2, groups=groups, bias=False),
            nn.BatchNorm2d(c_out),
        ]
        if act is not None:
            layers.append(_act(act))
        super().__init__(*layers)


class SqueezeExcite(nn.Module):
    """Channel attention: global pool -> 1x1 reduce -> ReLU -> 1x1 expand -> hard-sigmoid -> scale."""

    def __init__(self, channels: int, squeeze: int) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(channels, squeeze, 1)
        self.act = nn.ReLU()
        self.fc2 = nn.Conv2d(squeeze, channels, 1)
        self.gate = HardSigmoid()

    def forward(self, x: Tensor) -> Tensor:
        s = F.adaptive_avg_pool2d(x, 1)
        return x * self.gate(self.fc2(self.act(self.fc1(s))))


class InvertedResidual(nn.Module):
    """MobileNetV3 bottleneck: expand (1x1) -> depthwise (kxk) -> [SE] -> project (1x1), residual when shapes allow."""

    def __init__(
        self,
        c_in: int,
        k: int,
        exp: int,
        c_out: int,
        se: bool,
        act: str,
        stride: int,
        se_ratio: float,
        divisor: int,
    ) -> None:
        super().__init__()
        self.use_res = stride == 1 and c_in == c_out
        self.expand = ConvBNAct(c_in, exp, 1, act=act) if exp != c_in else None
        self.dw = ConvBNAct(exp, exp, k, stride, groups=exp, act=act)
        self.se = SqueezeExcite(exp, make_divisible(exp * se_ratio, divisor)) if se else None
        self.project = ConvBNAct(exp, c_out, 1, act=None)

    def forward(self, x: Tensor) -> Tensor:
        h = self.expand(x) if self.expand is not None else x
        h = self.dw(h)
        if self.se is not None:
            h = self.se(h)
        h = self.project(h)
        return x + h if self.use_res else h


@dataclass
class MobileNetV3Output:
    """What :meth:`MobileNetV3.forward_features` returns: the logits and the tapped block outputs
    (``{block index: (B, C, H, W)}``, 0-based block indices)."""

    logits: Tensor
    features: dict[int, Tensor]


class MobileNetV3(nn.Module):
    """MobileNetV3 classifier (small or large), input ``(B, in_chans, img_size, img_size)`` -> logits.

    Example:
        >>> import torch
        >>> m = MobileNetV3(MobileNetV3Config.fashion_mnist()).eval()
        >>> m(torch.zeros(2, 1, 28, 28)).shape
        torch.Size([2, 10])
        >>> out = m.forward_features(torch.zeros(1, 1, 28, 28), taps=(1, -1))
        >>> sorted(out.features), tuple(out.features[3].shape)
        ([1, 3], (1, 40, 7, 7))
    """

    def __init__(self, config: MobileNetV3Config) -> None:
        super().__init__()
        if not isinstance(config, MobileNetV3Config):
            raise InvalidInputError(f"config must be a MobileNetV3Config, got {type(config).__name__}")
        self.config = config
        _, last, hidden = _TABLES[config.arch]
        self.stem = ConvBNAct(config.in_chans, config.stem_channels, 3, config.stem_stride, act="hswish")
        blocks: list[nn.Module] = []
        c = config.stem_channels
        for k, exp, c_out, se, act, s in config.blocks():
            blocks.append(InvertedResidual(c, k, exp, c_out, se, act, s, config.se_ratio, config.divisor))
            c = c_out
        self.blocks = nn.ModuleList(blocks)
        last_c = (
            config.last_channels
            if config.last_channels is not None
            else make_divisible(last * config.width_mult)
        )
        self.last = ConvBNAct(c, last_c, 1, act="hswish")
        hid = config.hidden_channels if config.hidden_channels is not None else hidden
        if hid:
            self.classifier: nn.Module = nn.Sequential(
                nn.Linear(last_c, hid),
                nn.Hardswish(),
                nn.Dropout(config.dropout),
                nn.Linear(hid, config.num_classes),
            )
        else:
            self.classifier = nn.Sequential(nn.Dropout(config.dropout), nn.Linear(last_c, config.num_classes))
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    @property
    def block_channels(self) -> list[int]:
        """Output channels of each block (the width of a feature tap)."""
        return [b[2] for b in self.config.blocks()]

    def check_input(self, x: Tensor) -> None:
        """Raise :class:`DimensionMismatchError` unless ``x`` is ``(B, in_chans, img_size, img_size)`` float,
        :class:`DeviceMismatchError` unless it is on the model's device."""
        cfg = self.config
        if not isinstance(x, Tensor):
            raise InvalidInputError(f"expected a torch.Tensor, got {type(x).__name__}")
        expected = (cfg.in_chans, cfg.img_size, cfg.img_size)
        if x.ndim != 4 or tuple(x.shape[1:]) != expected:
            raise DimensionMismatchError(
                f"MobileNetV3 input has shape {tuple(x.shape)}, expected (batch, {expected[0]}, {expected[1]}, "
                f"{expected[2]}) (channels, height, width)"
            )
        if not x.is_floating_point():
            raise InvalidInputError(f"MobileNetV3 input must be a floating-point tensor, got dtype {x.dtype}")
        want = next(self.parameters()).device  # not stem[0].weight: fake_quantize wraps the stem
        if x.device != want:
            raise DeviceMismatchError(f"MobileNetV3 input is on {x.device} but the model is on {want}")

    def fuse_bn(self) -> MobileNetV3:
        """An eval-mode copy with every BatchNorm folded into the convolution before it (the same
        function up to float rounding, about a third fewer ops per forward in eager torch; ONNX
        Runtime folds them itself). For inference only: its weights do not load into an unfused model.

        Example:
            >>> import torch
            >>> m = MobileNetV3(MobileNetV3Config.fashion_mnist()).eval()
            >>> x = torch.randn(2, 1, 28, 28)
            >>> bool(torch.allclose(m.fuse_bn()(x), m(x), atol=1e-5))
            True
        """
        import copy

        out = copy.deepcopy(self).eval()
        with torch.no_grad():
            for mod in out.modules():
                if isinstance(mod, ConvBNAct) and isinstance(mod[1], nn.BatchNorm2d):
                    conv, bn = mod[0], mod[1]
                    assert (
                        isinstance(conv, nn.Conv2d)
                        and bn.running_var is not None
                        and bn.running_mean is not None
                    )
                    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
                    k, st, pad = conv.kernel_size, conv.stride, conv.padding
                    fused = nn.Conv2d(
                        conv.in_channels,
                        conv.out_channels,
                        (k[0], k[1]),
                        (st[0], st[1]),
                        pad if isinstance(pad, str) else (pad[0], pad[1]),
                        groups=conv.groups,
                        bias=True,
                    )
                    fused.weight.copy_(conv.weight * scale[:, None, None, None])
                    assert fused.bias is not None
                    fused.bias.copy_(bn.bias - bn.running_mean * scale)
                    mod[0] = fused
                    mod[1] = nn.Identity()
        return out

    def _head(self, h: Tensor) -> Tensor:
        h = self.last(h)
        return self.classifier(torch.flatten(F.adaptive_avg_pool2d(h, 1), 1))

    def forward(self, x: Tensor) -> Tensor:
        """Logits ``(B, num_classes)``."""
        self.check_input(x)
        h = self.stem(x)
        for blk in self.blocks:
            h = blk(h)
        return self._head(h)

    def forward_features(self, x: Tensor, taps: tuple[int, ...] | list[int] = ()) -> MobileNetV3Output:
        """Logits and the outputs of the blocks in ``taps`` (0-based; negative counts from the end)."""
        self.check_input(x)
        n = len(self.blocks)
        want: set[int] = set()
        for t in taps:
            if isinstance(t, bool) or not isinstance(t, int) or not -n <= t < n:
                raise InvalidInputError(f"feature tap {t!r} is not a block index in [-{n}, {n})")
            want.add(t % n)
        feats: dict[int, Tensor] = {}
        h = self.stem(x)
        for i, blk in enumerate(self.blocks):
            h = blk(h)
            if i in want:
                feats[i] = h
        return MobileNetV3Output(self._head(h), feats)


def count_parameters(model: nn.Module, *, trainable_only: bool = False) -> int:
    """Number of parameters of ``model`` (all of them, or only those that require grad).

    Example:
        >>> count_parameters(nn.Linear(3, 2))
        8
    """
    if not isinstance(model, nn.Module):
        raise InvalidInputError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
