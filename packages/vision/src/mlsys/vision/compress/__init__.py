"""mlsys.vision.compress: a small CNN student, distillation and quantization of the package's models.

* :class:`MobileNetV3` (small/large, width multiplier, input-size-aware stem, feature taps).
* :class:`OutputDistillation` (Hinton KD) and :class:`FeatureDistillation` (projection heads
  matching the teacher's block features), trained by :class:`~mlsys.vision.Trainer`, with an
  optional :class:`TeacherCache` of the teacher's outputs.
* Quantization: :func:`quantize_onnx` (onnxruntime INT8, dynamic or static QDQ with
  :class:`CalibrationData`), :class:`MixedPrecisionPolicy` applied by :func:`fake_quantize` (torch)
  or :func:`quantize_mixed_onnx` (QDQ INT8 + ``MatMulNBits`` INT4), :func:`smooth_quant`,
  :func:`sensitivity_report`; graph inspection with :func:`quantized_layers` and
  :func:`onnx_layers`; :func:`onnx_parity` over batch sizes.
* Deployment: :func:`choose_onnx_model` times the FP32 model and its quantized variants on this
  machine (each in its own process) and keeps the fastest one within an accuracy budget, or the
  FP32 model when no variant beats it (a :class:`DeploymentChoice`).

Example:
    >>> import torch
    >>> from mlsys.vision.compress import MobileNetV3, MobileNetV3Config, count_parameters
    >>> m = MobileNetV3(MobileNetV3Config.fashion_mnist())
    >>> count_parameters(m)
    27274
"""

from mlsys.vision.compress._distill import (
    FeatureDistillation,
    OutputDistillation,
    TeacherCache,
    precompute_teacher,
)
from mlsys.vision.compress._mobilenet import (
    MobileNetV3,
    MobileNetV3Config,
    MobileNetV3Output,
    count_parameters,
    make_divisible,
)
from mlsys.vision.compress._onnxtools import (
    ParityReport,
    ParityResult,
    load_onnx,
    onnx_layers,
    onnx_parity,
    quantized_layers,
)
from mlsys.vision.compress._quant import (
    CalibrationData,
    LayerSensitivity,
    MixedPrecisionPolicy,
    MixedQuantResult,
    QuantizationError,
    SensitivityReport,
    SplitQKV,
    fake_quantize,
    fuse_attention_onnx,
    quant_dequant_weight,
    quantizable_layers,
    quantize_mixed_onnx,
    quantize_onnx,
    sensitivity_report,
    smooth_quant,
    split_qkv,
)
from mlsys.vision.compress._select import DeploymentChoice, OnnxCandidate, choose_onnx_model

__all__ = [
    "CalibrationData",
    "DeploymentChoice",
    "FeatureDistillation",
    "LayerSensitivity",
    "MixedPrecisionPolicy",
    "MixedQuantResult",
    "MobileNetV3",
    "MobileNetV3Config",
    "MobileNetV3Output",
    "OnnxCandidate",
    "OutputDistillation",
    "ParityReport",
    "ParityResult",
    "QuantizationError",
    "SensitivityReport",
    "SplitQKV",
    "TeacherCache",
    "choose_onnx_model",
    "count_parameters",
    "fake_quantize",
    "fuse_attention_onnx",
    "load_onnx",
    "make_divisible",
    "onnx_layers",
    "onnx_parity",
    "precompute_teacher",
    "quant_dequant_weight",
    "quantizable_layers",
    "quantize_mixed_onnx",
    "quantize_onnx",
    "quantized_layers",
    "sensitivity_report",
    "smooth_quant",
    "split_qkv",
]
