"""Shared fixtures of the vision tests: tiny ViTs and one torch thread."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from mlsys.vision import ViT, ViTConfig


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def _tiny_config(**kw: object) -> ViTConfig:
    base: dict[str, object] = dict(
        img_size=16, patch_size=2, in_chans=1, num_classes=5, embed_dim=32, depth=6, num_heads=4
    )
    base.update(kw)
    return ViTConfig(**base)  # type: ignore[arg-type]


@pytest.fixture
def tiny_config() -> Callable[..., ViTConfig]:
    """``tiny_config(**overrides)``: a 16x16x1, patch-2 (64 tokens), 6-block, width-32 ViT config."""
    return _tiny_config


@pytest.fixture
def tiny_vit() -> ViT:
    torch.manual_seed(0)
    return ViT(_tiny_config()).eval()
