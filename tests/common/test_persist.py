"""mlsys.common.persist: manifests verify class and checksums; atomic_directory never half-replaces."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from mlsys.common.errors import CorruptFileError, InvalidInputError
from mlsys.common.persist import MANIFEST, atomic_directory, file_sha256, read_manifest, write_manifest


def _saved(tmp_path: Path) -> Path:
    d = tmp_path / "model"
    with atomic_directory(d) as tmp:
        (tmp / "a.txt").write_text("alpha")
        (tmp / "sub").mkdir()
        (tmp / "sub" / "b.bin").write_bytes(bytes(range(256)) * 5000)  # > one 1 MiB read block
        write_manifest(
            tmp,
            cls="Demo",
            format_version=3,
            config={"k": [1, 2]},
            files=["a.txt", "sub/b.bin"],
            extra={"n": 7},
        )
    return d


def test_round_trip_and_checksum(tmp_path: Path) -> None:
    d = _saved(tmp_path)
    m = read_manifest(d, cls="Demo")
    assert (m["format_version"], m["config"], m["n"]) == (3, {"k": [1, 2]}, 7)
    blob = (d / "sub" / "b.bin").read_bytes()
    assert m["checksums"]["sub/b.bin"] == hashlib.sha256(blob).hexdigest() == file_sha256(d / "sub" / "b.bin")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]  # no temporary left behind


@pytest.mark.parametrize(
    "tamper, match",
    [
        (lambda d: (d / "a.txt").write_text("alphA"), "does not match"),
        (lambda d: (d / "sub" / "b.bin").write_bytes(b"\0" * 10), "does not match"),
        (lambda d: (d / "a.txt").unlink(), "missing"),
        (lambda d: (d / MANIFEST).unlink(), "no manifest"),
        (lambda d: (d / MANIFEST).write_text("{not json"), "unreadable"),
        (lambda d: (d / MANIFEST).write_text("[1, 2]"), "expected 'Demo'"),
        (lambda d: _edit(d, lambda m: m.update({"class": "Other"})), "'Other', expected 'Demo'"),
        (lambda d: _edit(d, lambda m: m.pop("config")), "lacks 'config'"),
        (lambda d: _edit(d, lambda m: m.update({"checksums": ["a.txt"]})), "must map"),
        (lambda d: _edit(d, lambda m: m["checksums"].update({"../x": "0"})), "no '..'"),
        (lambda d: _edit(d, lambda m: m["checksums"].update({"/etc/passwd": "0"})), "must map"),
        (lambda d: (d / MANIFEST).write_text("[" * 100_000 + "]" * 100_000), "unreadable"),
    ],
)
def test_refuses_untrusted_directories(tmp_path: Path, tamper: object, match: str) -> None:
    d = _saved(tmp_path)
    tamper(d)  # type: ignore[operator]
    with pytest.raises(CorruptFileError, match=match):
        read_manifest(d, cls="Demo")


def _edit(d: Path, change: object) -> None:
    m = json.loads((d / MANIFEST).read_text())
    change(m)  # type: ignore[operator]
    (d / MANIFEST).write_text(json.dumps(m))


def test_failed_save_keeps_the_previous_directory(tmp_path: Path) -> None:
    d = _saved(tmp_path)
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_directory(d) as tmp:
            (tmp / "a.txt").write_text("half")
            raise RuntimeError("boom")
    assert read_manifest(d, cls="Demo")["config"] == {"k": [1, 2]}
    assert (d / "a.txt").read_text() == "alpha"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_replaces_a_saved_directory_but_refuses_foreign_ones(tmp_path: Path) -> None:
    d = _saved(tmp_path)
    with atomic_directory(d) as tmp:
        (tmp / "c.txt").write_text("new")
        write_manifest(tmp, cls="Demo", format_version=4, config={}, files=["c.txt"])
    assert read_manifest(d, cls="Demo")["format_version"] == 4 and not (d / "a.txt").exists()
    foreign = tmp_path / "photos"
    foreign.mkdir()
    (foreign / "cat.jpg").write_bytes(b"x")
    with pytest.raises(InvalidInputError, match=r"non-empty directory without manifest\.json"):
        atomic_directory(foreign)
    (tmp_path / "file").write_text("x")
    with pytest.raises(InvalidInputError, match="not a directory"):
        atomic_directory(tmp_path / "file")
    assert (foreign / "cat.jpg").read_bytes() == b"x"
