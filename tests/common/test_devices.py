"""mlsys.common.devices: device and precision resolution with typed errors."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from mlsys.common.devices import check_same_device, resolve_device, resolve_precision  # noqa: E402
from mlsys.common.errors import DeviceMismatchError, DeviceUnavailableError, InvalidInputError  # noqa: E402


def test_cpu_and_none_resolve_to_cpu() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(None) == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")


def test_auto_picks_gpu_only_when_present() -> None:
    dev = resolve_device("auto")
    assert dev.type == ("cuda" if torch.cuda.is_available() else dev.type)
    if not torch.cuda.is_available():
        assert dev.type in {"cpu", "mps"}


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_gpu_is_a_typed_error_naming_what_was_found() -> None:
    with pytest.raises(DeviceUnavailableError, match="CUDA is not available") as info:
        resolve_device("cuda")
    assert torch.__version__ in str(info.value)
    with pytest.raises(DeviceUnavailableError):
        resolve_device("cuda:1")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_index_out_of_range() -> None:
    with pytest.raises(DeviceUnavailableError, match="CUDA device"):
        resolve_device(f"cuda:{torch.cuda.device_count()}")


@pytest.mark.parametrize("bad", ["gpu0", "", 3, 1.5, object()])
def test_bad_device_names_are_typed(bad: object) -> None:
    with pytest.raises((InvalidInputError, DeviceUnavailableError)):
        resolve_device(bad)


def test_precision_fallbacks_are_stated() -> None:
    p = resolve_precision("fp32", "cpu")
    assert (p.dtype, p.autocast, p.fallback) == (torch.float32, False, None)
    b = resolve_precision("BF16", "cpu")
    assert b.dtype == torch.bfloat16 and b.autocast and b.fallback is None
    h = resolve_precision("fp16", "cpu")
    assert h.dtype == torch.float32 and not h.autocast and "fp16" in (h.fallback or "")
    with pytest.raises(InvalidInputError, match="precision"):
        resolve_precision("int3", "cpu")


def test_check_same_device() -> None:
    model = torch.nn.Linear(3, 1)
    check_same_device(model, torch.zeros(2, 3))
    check_same_device(torch.nn.ReLU(), torch.zeros(2))  # no parameters: any device
    if torch.cuda.is_available():
        with pytest.raises(DeviceMismatchError, match="cuda"):
            check_same_device(model, torch.zeros(2, 3, device="cuda"))
    meta = torch.zeros(2, 3, device="meta")
    with pytest.raises(DeviceMismatchError, match="meta"):
        check_same_device(model, meta)
