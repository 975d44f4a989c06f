"""load_model on damaged directories: every parse failure is a typed CorruptFileError, never a bare one."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlsys.common.errors import CorruptFileError
from mlsys.vision import ViT, load_model, save_model


def _saved(model: ViT, path: Path) -> Path:
    return save_model(model, path)


@pytest.mark.parametrize(
    "payload",
    [
        b"\xff\xfe\x00garbage\x80\x81",  # not UTF-8 (the bare UnicodeDecodeError of issue 18)
        b"\x89PNG\r\n\x1a\n\x00\x00",  # another format's magic
        b"{not json",
        b"[1, 2, 3]",  # JSON, but not an object
        b"[" * 100_000,  # nesting deep enough to blow the recursion limit
        b"",
    ],
    ids=["latin1-bytes", "png-magic", "bad-json", "json-list", "deep-nesting", "empty"],
)
def test_garbage_manifest_is_corrupt_file_error(tiny_vit: ViT, tmp_path: Path, payload: bytes) -> None:
    d = _saved(tiny_vit, tmp_path / "m")
    (d / "manifest.json").write_bytes(payload)
    with pytest.raises(CorruptFileError, match=r"manifest\.json"):
        load_model(d)


@given(st.binary(max_size=200))
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_random_bytes_manifest_never_escapes_untyped(tiny_vit: ViT, tmp_path: Path, payload: bytes) -> None:
    d = tmp_path / "m"
    if not (d / "model.safetensors").exists():
        _saved(tiny_vit, d)
    (d / "manifest.json").write_bytes(payload)
    with pytest.raises(CorruptFileError):  # (random bytes are never a valid manifest)
        load_model(d)


def _rewrite(d: Path, **changes: object) -> None:
    m = json.loads((d / "manifest.json").read_text())
    m.update(changes)
    (d / "manifest.json").write_text(json.dumps(m))


@pytest.mark.parametrize(
    "changes",
    [
        {"config": None},
        {"config": {"img_size": "sixteen"}},
        {"files": {"../outside.bin": "0" * 64, "model.safetensors": "0"}},
        {"files": {"model.safetensors": 17}},
        {"class": "Pickle"},
    ],
    ids=["no-config", "bad-config", "path-escape", "non-str-digest", "unknown-class"],
)
def test_malformed_manifest_fields(tiny_vit: ViT, tmp_path: Path, changes: dict[str, object]) -> None:
    d = _saved(tiny_vit, tmp_path / "m")
    _rewrite(d, **changes)
    with pytest.raises(CorruptFileError):
        load_model(d)


def test_garbage_weights_with_matching_checksum(tiny_vit: ViT, tmp_path: Path) -> None:
    # A forged manifest whose checksum matches garbage weights: safetensors' own error becomes typed.
    d = _saved(tiny_vit, tmp_path / "m")
    garbage = b"\x00\x01garbage-not-safetensors" * 10
    (d / "model.safetensors").write_bytes(garbage)
    _rewrite(d, files={"model.safetensors": hashlib.sha256(garbage).hexdigest()})
    with pytest.raises(CorruptFileError, match="safetensors"):
        load_model(d)


def test_good_directory_still_loads_exactly(tiny_vit: ViT, tmp_path: Path) -> None:
    loaded = load_model(_saved(tiny_vit, tmp_path / "m"))
    x = torch.randn(2, 1, 16, 16)
    assert torch.equal(loaded(x), tiny_vit(x))
