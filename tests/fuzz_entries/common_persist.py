"""Fuzz entries for mlsys.common.persist (directory manifests shared by the domain packages)."""

MODULES = ["mlsys.common.persist"]
_FILES = (
    "exempt: reads or writes a directory; tampered, truncated, foreign and path-escaping manifests "
    "are tested in tests/common/test_persist.py"
)
ENTRIES = {
    "mlsys.common.persist.atomic_directory": _FILES,
    "mlsys.common.persist.file_sha256": _FILES,
    "mlsys.common.persist.read_manifest": _FILES,
    "mlsys.common.persist.write_manifest": _FILES,
}
