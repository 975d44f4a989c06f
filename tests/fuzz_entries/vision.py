"""Fuzz entries for the public names mlsys.vision gained in issue 21 (GPU path, on_error) and
issue 15 (mlsys.vision.compress: MobileNetV3 student, distillation, quantization)."""

MODULES = ["mlsys.vision.compress"]

_C = "mlsys.vision.compress."
_TORCH = (
    "exempt: torch-level building block (nn.Module / tensor function); tensors are not a request boundary"
)
_FS = (
    "exempt: reads or writes ONNX files; truncated/corrupt files are tested in tests/vision/test_quantize.py"
)
_REC = "exempt: a result record"

ENTRIES = {
    "mlsys.vision.bucket_for": "junk",
    "mlsys.vision.ImageError": "exempt: a result record built by InferencePipeline.predict_batch",
    _C + "MobileNetV3Config": "junk",
    _C + "MixedPrecisionPolicy": "junk",
    _C + "CalibrationData": "junk",
    _C + "make_divisible": "junk",
    _C + "choose_onnx_model": "junk",
    _C + "DeploymentChoice": _REC
    + " returned by choose_onnx_model (display tested in tests/vision/test_select.py)",
    _C + "OnnxCandidate": _REC + " of a DeploymentChoice",
    _C + "count_parameters": "junk",
    _C + "MobileNetV3": _TORCH,
    _C + "OutputDistillation": _TORCH,
    _C + "FeatureDistillation": _TORCH,
    _C + "SplitQKV": _TORCH,
    _C + "fake_quantize": _TORCH,
    _C + "quant_dequant_weight": _TORCH,
    _C + "quantizable_layers": _TORCH,
    _C + "smooth_quant": _TORCH,
    _C + "split_qkv": _TORCH,
    _C + "sensitivity_report": _TORCH,
    _C + "precompute_teacher": _TORCH,
    _C + "MobileNetV3Output": _REC,
    _C + "TeacherCache": _REC + " of teacher outputs built by precompute_teacher (load/save tested)",
    _C + "LayerSensitivity": _REC,
    _C + "MixedQuantResult": _REC,
    _C + "ParityResult": _REC,
    _C + "ParityReport": _REC
    + " list returned by onnx_parity (display tested in tests/vision/test_display.py)",
    _C + "SensitivityReport": _REC
    + " list returned by sensitivity_report (display tested in tests/vision/test_display.py)",
    _C + "load_onnx": _FS,
    _C + "onnx_layers": _FS,
    _C + "quantized_layers": _FS,
    _C + "quantize_onnx": _FS,
    _C + "fuse_attention_onnx": _FS,
    _C + "quantize_mixed_onnx": _FS,
    _C + "onnx_parity": "exempt: takes a model and an ONNX session or file, not request data",
}
