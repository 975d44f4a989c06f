"""Saving and loading the package's models: a directory with ``manifest.json`` and safetensors.

The manifest records the format version, the model class, its configuration and the sha256 of
every payload; :func:`load_model` verifies all of it before building the model, and never
unpickles anything (weights are read with safetensors).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mlsys.common.errors import CorruptFileError, FormatVersionError, InvalidInputError, UnknownNameError
from mlsys.common.persist import file_sha256 as _sha256

__all__ = ["FORMAT_VERSION", "load_model", "save_model"]

FORMAT_VERSION = 1
_WEIGHTS = "model.safetensors"


def _registry() -> dict[str, Any]:
    from mlsys.vision._pruning import DynamicTokenPruning, PruningConfig
    from mlsys.vision._vit import ViT, ViTConfig
    from mlsys.vision.compress._mobilenet import MobileNetV3, MobileNetV3Config

    return {
        "ViT": (ViT, ViTConfig),
        "DynamicTokenPruning": (DynamicTokenPruning, PruningConfig),
        "MobileNetV3": (MobileNetV3, MobileNetV3Config),
    }


def save_model(model: nn.Module, path: str | Path, *, extra: dict[str, Any] | None = None) -> Path:
    """Write ``model`` (a :class:`ViT` or :class:`DynamicTokenPruning`) to the directory ``path``.

    Args:
        model: the model to save.
        path: a directory (created if needed); existing files of the same names are replaced.
        extra: JSON-serialisable metadata stored in the manifest (training config, accuracy, ...).

    Example:
        >>> import tempfile
        >>> from mlsys.vision import ViT, ViTConfig
        >>> m = ViT(ViTConfig(img_size=8, patch_size=4, in_chans=1, num_classes=2, embed_dim=8,
        ...                   depth=1, num_heads=2))
        >>> d = save_model(m, tempfile.mkdtemp())
        >>> type(load_model(d)).__name__
        'ViT'
    """
    from safetensors.torch import save_file

    name = type(model).__name__
    if name not in _registry():
        raise UnknownNameError(f"cannot save a {name}; expected one of {sorted(_registry())}")
    if extra is not None:
        try:
            json.dumps(extra)
        except TypeError as exc:
            raise InvalidInputError(f"extra metadata must be JSON-serialisable: {exc}") from exc
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(state, str(out / _WEIGHTS))
    config = model.config.to_dict()  # type: ignore[union-attr,operator]
    manifest: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "class": name,
        "config": config,
        "files": {_WEIGHTS: _sha256(out / _WEIGHTS)},
        "extra": extra or {},
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True))
    return out


def read_manifest(path: str | Path) -> dict[str, Any]:
    """Read and check ``manifest.json`` of a saved model (format version, class, checksums)."""
    root = Path(path)
    mpath = root / "manifest.json"
    if not mpath.is_file():
        raise CorruptFileError(f"{root} has no manifest.json; expected a directory written by save_model")
    try:
        manifest = json.loads(mpath.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise CorruptFileError(
            f"{mpath} is not UTF-8 text (byte {exc.start}); expected the JSON manifest written by save_model"
        ) from exc
    except (json.JSONDecodeError, RecursionError) as exc:
        raise CorruptFileError(
            f"{mpath} is not valid JSON ({exc}); expected the JSON manifest written by save_model"
        ) from exc
    if not isinstance(manifest, dict):
        raise CorruptFileError(f"{mpath} must hold a JSON object, got {type(manifest).__name__}")
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise FormatVersionError(f"{mpath} has format_version {version!r}, expected {FORMAT_VERSION}")
    if manifest.get("class") not in _registry():
        raise CorruptFileError(
            f"{mpath} names class {manifest.get('class')!r}, expected one of {sorted(_registry())}"
        )
    if not isinstance(manifest.get("config"), dict):
        raise CorruptFileError(f"{mpath} has no 'config' object; expected the model configuration")
    files = manifest.get("files")
    if not isinstance(files, dict) or _WEIGHTS not in files:
        raise CorruptFileError(f"{mpath} does not list {_WEIGHTS} with its checksum")
    for fname, digest in files.items():
        if not isinstance(fname, str) or Path(fname).name != fname or not isinstance(digest, str):
            raise CorruptFileError(
                f"{mpath} lists file {fname!r} with checksum {digest!r}; expected plain file names "
                "inside the model directory mapped to sha256 hex digests"
            )
        fpath = root / fname
        if not fpath.is_file():
            raise CorruptFileError(f"{fpath} is missing (listed in the manifest)")
        actual = _sha256(fpath)
        if actual != digest:
            raise CorruptFileError(f"{fpath} has sha256 {actual}, expected {digest} from the manifest")
    return manifest


def load_model(path: str | Path, *, map_location: str | torch.device = "cpu") -> nn.Module:
    """Load a model written by :func:`save_model`, verifying manifest and checksums; returns it in eval mode."""
    from safetensors.torch import load_file

    root = Path(path)
    manifest = read_manifest(root)
    cls, config_cls = _registry()[manifest["class"]]
    try:
        config = config_cls.from_dict(manifest["config"]) if hasattr(config_cls, "from_dict") else None
        if config is None:
            config = config_cls(**manifest["config"])
    except (TypeError, ValueError, KeyError) as exc:
        raise CorruptFileError(f"{root / 'manifest.json'} has an invalid config: {exc}") from exc
    model = cls(config)
    try:
        state = load_file(str(root / _WEIGHTS), device=str(map_location))
    except Exception as exc:  # safetensors raises its own SafetensorError (no common base to name)
        raise CorruptFileError(f"{root / _WEIGHTS} is not a readable safetensors file: {exc}") from exc
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CorruptFileError(f"{root / _WEIGHTS} does not match the manifest's config: {exc}") from exc
    return model.eval()
