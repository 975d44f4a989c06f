"""mlsys.vision: profiled image preprocessing and inference, a ViT, token pruning and merging.

* :class:`Preprocessor` (PIL or OpenCV) and :class:`InferencePipeline` (torch or ONNX Runtime),
  every step a :mod:`mlsys.common.profiling` stage.
* :class:`ViT`, :class:`DynamicTokenPruning` (DynamicViT-style, with :class:`PruningLoss`) and
  :class:`TokenMerging` (training-free bipartite soft matching).
* :class:`Trainer` and friends for the package's models; :func:`save_model` / :func:`load_model`;
  :func:`export_onnx` with :func:`check_onnx_parity`.
* :mod:`mlsys.vision.compress`: a MobileNetV3 student, output and feature distillation, INT8 and
  mixed INT8/INT4 quantization (onnxruntime), SmoothQuant and a per-layer sensitivity report.

Example:
    >>> import torch
    >>> from mlsys.vision import ViT, ViTConfig, DynamicTokenPruning
    >>> vit = ViT(ViTConfig(img_size=8, patch_size=2, in_chans=1, num_classes=3, embed_dim=16,
    ...                     depth=4, num_heads=2))
    >>> DynamicTokenPruning.from_vit(vit, keep_ratio=0.7).eval()(torch.zeros(1, 1, 8, 8)).shape
    torch.Size([1, 3])
"""

from mlsys.vision._folder import IMAGE_EXTENSIONS, FolderBatch, ImageFolder
from mlsys.vision._merging import TokenMerging, bipartite_merge
from mlsys.vision._onnx import OnnxExportError, OnnxParityError, check_onnx_parity, export_onnx, onnx_session
from mlsys.vision._persist import load_model, save_model
from mlsys.vision._pipeline import (
    BatchPrediction,
    ImageError,
    InferencePipeline,
    Prediction,
    bucket_for,
    softmax,
    top_k,
)
from mlsys.vision._preprocess import (
    BACKEND_TOLERANCE,
    ImageDecodeError,
    PreprocessConfig,
    Preprocessor,
    UnsupportedImageError,
)
from mlsys.vision._pruning import (
    DynamicTokenPruning,
    PruningConfig,
    PruningLoss,
    PruningOutput,
    TokenScorer,
    default_prune_after,
)
from mlsys.vision._train import (
    EvalResult,
    RandomCropFlip,
    TrainConfig,
    Trainer,
    TrainHistory,
    evaluate,
    images_to_tensor,
)
from mlsys.vision._vit import ViT, ViTConfig, ViTFeatures

__version__ = "0.1.0"

__all__ = [
    "BACKEND_TOLERANCE",
    "IMAGE_EXTENSIONS",
    "BatchPrediction",
    "DynamicTokenPruning",
    "EvalResult",
    "FolderBatch",
    "ImageDecodeError",
    "ImageError",
    "ImageFolder",
    "InferencePipeline",
    "OnnxExportError",
    "OnnxParityError",
    "Prediction",
    "PreprocessConfig",
    "Preprocessor",
    "PruningConfig",
    "PruningLoss",
    "PruningOutput",
    "RandomCropFlip",
    "TokenMerging",
    "TokenScorer",
    "TrainConfig",
    "TrainHistory",
    "Trainer",
    "UnsupportedImageError",
    "ViT",
    "ViTConfig",
    "ViTFeatures",
    "__version__",
    "bipartite_merge",
    "bucket_for",
    "check_onnx_parity",
    "default_prune_after",
    "evaluate",
    "export_onnx",
    "images_to_tensor",
    "load_model",
    "onnx_session",
    "save_model",
    "softmax",
    "top_k",
]
