"""Directory persistence helpers (re-exported from :mod:`mlsys.common.persist`, shared with the
other domain packages): ``manifest.json`` with class, format version, config and checksums."""

from __future__ import annotations

from mlsys.common.persist import MANIFEST, file_sha256, read_manifest, write_manifest

__all__ = ["MANIFEST", "file_sha256", "read_manifest", "write_manifest"]
