"""Installing the distributions into a fresh virtualenv (slow: builds wheels and installs from PyPI/cache)."""

from __future__ import annotations

import subprocess
import venv
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_mlsys_common_alone_installs_without_torch(tmp_path: Path) -> None:
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    py = env_dir / "bin" / "python"
    subprocess.run(
        [
            str(py),
            "-m",
            "pip",
            "install",
            "-q",
            "-c",
            str(REPO / "constraints.txt"),
            str(REPO / "packages" / "common"),
        ],
        check=True,
    )
    code = (
        "import importlib.util, mlsys, mlsys.common\n"
        "assert mlsys.__file__ is None, mlsys.__file__\n"
        "assert importlib.util.find_spec('torch') is None, 'torch was installed with mlsys-common'\n"
        "print(mlsys.common.__version__)\n"
    )
    out = subprocess.run([str(py), "-c", code], check=True, capture_output=True, text=True)
    assert out.stdout.strip() == "0.1.0"
    # The other domain packages are not there: installing one package does not drag in the others.
    missing = subprocess.run([str(py), "-c", "import mlsys.recsys"], capture_output=True, text=True)
    assert missing.returncode != 0 and "mlsys.recsys" in missing.stderr
