"""Compute-device and precision resolution shared by every package (torch imported lazily).

One place decides what ``device="auto"`` means, refuses a device the machine does not have with a
typed error, and resolves a mixed-precision request to what the device can run (with the fallback
stated, never silent). :mod:`mlsys.common` itself never imports torch: these functions import it
when called.

Example:
    >>> resolve_device("cpu").type
    'cpu'
    >>> resolve_precision("fp32", "cpu")
    Precision(requested='fp32', dtype_name='float32', autocast=False, fallback=None)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from mlsys.common._optional import import_optional
from mlsys.common.errors import DeviceMismatchError, DeviceUnavailableError, InvalidInputError

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = ["Precision", "check_same_device", "resolve_device", "resolve_precision"]

PrecisionName = Literal["fp32", "bf16", "fp16"]
_PRECISIONS: dict[str, str] = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


def _torch() -> Any:
    return import_optional("torch", extra="mlsys-vision")


def resolve_device(device: Any = "cpu") -> torch.device:
    """Resolve ``device`` to a :class:`torch.device` this machine has.

    Args:
        device: ``"cpu"`` (the reproducible default), ``"cuda"``, ``"cuda:N"``, ``"mps"``, ``"auto"``
            (the first CUDA GPU if one is present, else Apple's MPS if present, else the CPU), ``None``
            (same as ``"cpu"``) or a :class:`torch.device`.

    Raises:
        DeviceUnavailableError: the device is not present; the message says what was found.
        InvalidInputError: ``device`` is not a device name.

    Example:
        >>> str(resolve_device(None))
        'cpu'
    """
    torch = _torch()
    if device is None:
        return torch.device("cpu")
    if isinstance(device, str) and device.strip().lower() == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", torch.cuda.current_device())
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if not isinstance(device, (str, torch.device)):
        raise InvalidInputError(
            f"device must be 'cpu', 'cuda', 'cuda:N', 'mps', 'auto' or a torch.device, got {type(device).__name__}"
        )
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError, TypeError) as exc:
        raise InvalidInputError(
            f"device {device!r} is not a device name; expected 'cpu', 'cuda', 'cuda:N', 'mps' or 'auto'"
        ) from exc
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            built = torch.version.cuda
            why = (
                f"torch {torch.__version__} was built without CUDA"
                if built is None
                else (f"torch {torch.__version__} (CUDA {built}) finds no usable GPU")
            )
            raise DeviceUnavailableError(f"device {device!r} was asked for but CUDA is not available: {why}")
        n = torch.cuda.device_count()
        index = dev.index if dev.index is not None else torch.cuda.current_device()
        if not 0 <= index < n:
            raise DeviceUnavailableError(
                f"device {device!r} was asked for but this machine has {n} CUDA device(s)"
            )
        return torch.device("cuda", index)
    if dev.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise DeviceUnavailableError(
                f"device {device!r} was asked for but MPS is not available on this machine"
            )
        return dev
    if dev.type != "cpu":
        raise DeviceUnavailableError(
            f"device {device!r} (type {dev.type!r}) is not supported; use cpu, cuda or mps"
        )
    return dev


@dataclass(frozen=True)
class Precision:
    """A resolved precision: what was asked, the dtype used and whether autocast is on.

    ``fallback`` is ``None`` when the request runs as asked, else a sentence saying what runs
    instead and why (e.g. fp16 on a CPU runs as fp32).
    """

    requested: str
    dtype_name: str
    autocast: bool
    fallback: str | None

    @property
    def dtype(self) -> torch.dtype:
        """The torch dtype (``torch.float32``, ``torch.bfloat16`` or ``torch.float16``)."""
        return getattr(_torch(), self.dtype_name)  # type: ignore[no-any-return]


def resolve_precision(precision: str, device: Any = "cpu") -> Precision:
    """Resolve ``"fp32"``/``"bf16"``/``"fp16"`` for ``device`` to what it can run.

    bf16 runs where the device supports it (CUDA with bf16 support; the CPU, through autocast);
    fp16 autocast runs on CUDA only. An unsupported request falls back to fp32 and says so in
    :attr:`Precision.fallback`.

    Raises:
        InvalidInputError: an unknown precision name.

    Example:
        >>> resolve_precision("fp16", "cpu").fallback
        'fp16 autocast needs a CUDA device; running fp32 on cpu'
    """
    if not isinstance(precision, str) or precision.lower() not in _PRECISIONS:
        raise InvalidInputError(f"precision must be one of {sorted(_PRECISIONS)}, got {precision!r}")
    name = precision.lower()
    dev = resolve_device(device)
    torch = _torch()
    if name == "fp32":
        return Precision(name, "float32", False, None)
    if name == "fp16":
        if dev.type == "cuda":
            return Precision(name, "float16", True, None)
        return Precision(
            name, "float32", False, f"fp16 autocast needs a CUDA device; running fp32 on {dev.type}"
        )
    # bf16
    if dev.type == "cuda" and not torch.cuda.is_bf16_supported():
        return Precision(
            name, "float32", False, f"{torch.cuda.get_device_name(dev)} has no bf16 support; running fp32"
        )
    if dev.type == "mps":
        return Precision(name, "float32", False, "bf16 autocast is not supported on mps here; running fp32")
    return Precision(name, "bfloat16", True, None)


def check_same_device(model: Any, *tensors: Any, what: str = "input") -> None:
    """Raise :class:`DeviceMismatchError` if any tensor is not on the device of ``model``'s parameters.

    A model without parameters (or buffers) accepts inputs on any device.

    Example:
        >>> import torch
        >>> check_same_device(torch.nn.Linear(2, 2), torch.zeros(1, 2))
    """
    params = list(model.parameters()) + list(model.buffers())
    if not params:
        return
    want = params[0].device
    for i, t in enumerate(tensors):
        dev = getattr(t, "device", None)
        if dev is not None and dev != want:
            raise DeviceMismatchError(
                f"{what} {i} is on {dev} but the model is on {want}; move it with .to({str(want)!r}) "
                "or build the model with the same device"
            )
