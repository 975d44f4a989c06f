"""Repository-level invariants: namespace packaging, package boundaries, CI agreeing with the README."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ["common", "recsys", "rag", "vision"]


def readme_test_command() -> str:
    text = (REPO / "README.md").read_text()
    m = re.search(r"<!-- test-command -->\s*```bash\n(.+?)\n```", text)
    assert m, "README.md must contain the test command in a ```bash block after <!-- test-command -->"
    return m.group(1).strip()


def test_ci_runs_readme_test_command_verbatim() -> None:
    command = readme_test_command()
    ci_lines = [line.strip() for line in (REPO / ".ci" / "run").read_text().splitlines()]
    assert command in ci_lines, f".ci/run must run the README test command {command!r} on a line of its own"
    assert "nox -s tests" in command


def test_mlsys_is_a_namespace_package() -> None:
    import mlsys

    assert mlsys.__file__ is None, f"a regular package named mlsys shadows the namespace: {mlsys.__file__}"
    for p in PACKAGES:
        assert not (REPO / "packages" / p / "src" / "mlsys" / "__init__.py").exists()


@pytest.mark.parametrize("name", PACKAGES)
def test_each_package_has_version_and_py_typed(name: str) -> None:
    import importlib

    module = importlib.import_module(f"mlsys.{name}")
    assert re.fullmatch(r"\d+\.\d+\.\d+", module.__version__)
    assert (REPO / "packages" / name / "src" / "mlsys" / name / "py.typed").exists()
    pyproject = (REPO / "packages" / name / "pyproject.toml").read_text()
    assert f'name = "mlsys-{name}"' in pyproject
    if name != "common":
        assert '"mlsys-common"' in pyproject


def test_common_imports_without_torch() -> None:
    code = (
        "import sys, mlsys.common, mlsys.common.spaces, mlsys.common.errors, mlsys.common.validation, "
        "mlsys.common.data\n"
        "import pkgutil, importlib\n"
        "for m in pkgutil.walk_packages(mlsys.common.__path__, 'mlsys.common.'):\n"
        "    importlib.import_module(m.name)\n"
        "bad = [m for m in ('torch', 'faiss', 'hnswlib', 'matplotlib') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_common_distribution_does_not_depend_on_torch() -> None:
    pyproject = (REPO / "packages" / "common" / "pyproject.toml").read_text()
    deps = re.search(r"dependencies = \[(.*?)\]", pyproject, re.S)
    assert deps and "torch" not in deps.group(1)


@pytest.mark.parametrize("name", PACKAGES)
def test_domain_packages_import_only_common(name: str) -> None:
    others = [p for p in PACKAGES if p not in (name, "common")]
    pattern = re.compile(rf"^\s*(from|import)\s+mlsys\.({'|'.join(others)})\b", re.M)
    for path in (REPO / "packages" / name / "src").rglob("*.py"):
        assert not pattern.search(path.read_text()), f"{path} imports another domain package"


def test_constraints_pin_torch() -> None:
    lines = (REPO / "constraints.txt").read_text().splitlines()
    assert "torch==2.13.0" in [line.strip() for line in lines]
