"""Developer sessions for the mlsys monorepo.

    nox -s tests        default test suite (excludes @pytest.mark.slow)
    nox -s slow         only the slow tests (real data sets, training)
    nox -s gpu_bench    the GPU benchmark (issue 21); `-- --small --device cpu` on a CPU
    nox -s bench        pytest-benchmark suite; saves JSON under .benchmarks/
    nox -s bench -- --compare   ...and fails on a regression beyond BENCH_FAIL_THRESHOLD
    nox -s bench -- --smoke     every benchmark once, on small sizes (what CI runs)
    nox -s bench -- --gate      the regression gate: quality figures and speed ratios vs
                                benchmarks/gate/baseline.json; table in .benchmarks/gate/gate.{json,md}
    nox -s bench -- --update-baseline   rerun the gate and rewrite the baseline from it
    nox -s demo         a tour of every capability, printing its figures
    nox -s serve        the reference recommendation service (examples/recsys_service)
    nox -s notebooks    regenerate examples/notebooks/*.ipynb from their percent scripts and execute
                        each (limit NOTEBOOK_LIMIT_S); executed copies in build/notebooks/
    nox -s docs         the documentation site (mkdocs-material + mkdocstrings): the docstring
                        check, `mkdocs build --strict` into build/site/, the browser test
    nox -s lint         ruff check + ruff format --check
    nox -s typecheck    mypy on the four packages

Every session installs through constraints.txt, which pins torch==2.13.0 (a CPU build).
"""

from __future__ import annotations

import os
from pathlib import Path

import nox

nox.options.sessions = ["tests"]
nox.options.reuse_venv = "yes"
nox.options.default_venv_backend = "venv"

PYTHON = "3.11" if os.environ.get("CI") else None
CONSTRAINTS = ("-c", "constraints.txt")
PACKAGES = (
    "-e",
    "packages/common[all]",
    "-e",
    "packages/recsys",
    "-e",
    "packages/rag[minilm]",
    "-e",
    "packages/vision[all]",
)
# Gate regressions on the minimum: on this class of machine the mean of identical runs varied by
# ~22%, the minimum by ~1%.
BENCH_FAIL_THRESHOLD = "min:15%"


def _install(session: nox.Session, *requirements: str) -> None:
    session.install(*CONSTRAINTS, "torch==2.13.0")
    session.install(*CONSTRAINTS, *PACKAGES, *requirements)


def _install_obp(session: nox.Session) -> None:
    """Open Bandit Pipeline for the off-policy parity tests and its Open Bandit Dataset sample.

    obp 0.5.7 declares Python < 3.11 and pins torch 1.12, so it goes in without its declared
    dependencies (requirements/obp.txt has the ones it imports); if it cannot be installed, the
    tests that need it skip.
    """
    session.install(*CONSTRAINTS, "-r", "requirements/obp.txt")
    session.run(
        "python",
        "-m",
        "pip",
        "install",
        "--no-deps",
        "--ignore-requires-python",
        "obp==0.5.7",
        success_codes=[0, 1],
    )


def _install_examples(session: nox.Session) -> None:
    """The examples' own requirements (FastAPI/uvicorn for examples/recsys_service), tested like library code."""
    session.install(*CONSTRAINTS, "-r", "examples/recsys_service/requirements.txt")


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """The default test suite (not slow)."""
    _install(session, "-r", "requirements/test.txt")
    _install_obp(session)
    _install_examples(session)
    session.run("pytest", "-m", "not slow", *session.posargs, env={"HF_HUB_OFFLINE": "1"})


@nox.session(python=PYTHON)
def slow(session: nox.Session) -> None:
    """Only the slow tests."""
    _install(session, "-r", "requirements/test.txt")
    _install_obp(session)
    _install_examples(session)
    session.run("pytest", "-m", "slow", *session.posargs, env={"HF_HUB_OFFLINE": "1"})


@nox.session(python=PYTHON)
def bench(session: nox.Session) -> None:
    """The pytest-benchmark suite. ``-- --gate`` checks quality and speed ratios against the committed
    baseline (``-- --update-baseline`` rewrites it); ``-- --smoke`` runs each benchmark once;
    ``-- --compare`` compares absolute times with the last saved run on the same machine."""
    _install(session, "-r", "requirements/bench.txt")
    _install_obp(session)
    args = list(session.posargs)
    env = {"HF_HUB_OFFLINE": "1"}
    if "--gate" in args or "--update-baseline" in args:
        _gate(session, args, env)
        return
    extra = [
        "--benchmark-storage=.benchmarks",
        "--benchmark-sort=name",
        "--benchmark-columns=min,median,max,rounds",
    ]
    if "--smoke" in args:
        args.remove("--smoke")
        env["MLSYS_BENCH_SMOKE"] = "1"
        # the gate's benchmarks run in full, in their own CI step (`--gate`)
        extra += ["--benchmark-disable", "--ignore=benchmarks/gate"]
    else:
        extra.append("--benchmark-autosave")
    if "--compare" in args:
        args.remove("--compare")
        extra += ["--benchmark-compare", f"--benchmark-compare-fail={BENCH_FAIL_THRESHOLD}"]
    session.run("pytest", "benchmarks", "-p", "no:cacheprovider", *extra, *args, env=env)


def _gate(session: nox.Session, args: list[str], env: dict[str, str]) -> None:
    """Run the gate's benchmarks (~1 minute), then compare with, or rewrite, the committed baseline.

    Every run is also saved by pytest-benchmark under .benchmarks/ (the history that
    benchmarks/gate/history.py plots).
    """
    update = "--update-baseline" in args
    args = [a for a in args if a not in ("--gate", "--update-baseline")]
    run_json = ".benchmarks/gate/run.json"
    os.makedirs(".benchmarks/gate", exist_ok=True)  # --benchmark-json does not create folders
    session.run(
        "pytest",
        "benchmarks/gate",
        "-p",
        "no:cacheprovider",
        "--benchmark-storage=.benchmarks",
        "--benchmark-autosave",
        f"--benchmark-json={run_json}",
        "--benchmark-columns=min,median,max,rounds",
        "--benchmark-sort=name",
        *args,
        env=env,
    )
    if update:
        session.run("python", "benchmarks/gate/core.py", "update", "--run", run_json)
    else:
        session.run(
            "python", "benchmarks/gate/core.py", "check", "--run", run_json, "--out", ".benchmarks/gate"
        )


@nox.session(python=PYTHON)
def gpu_bench(session: nox.Session) -> None:
    """The GPU benchmark of issue 21 (``benchmarks/gpu_bench.py``): every section on a CUDA machine
    (under 5 minutes on one GPU); ``-- --small --device cpu`` runs it with reduced sizes on a CPU.
    Other arguments go to the script (``-- --sections throughput,latency``, ``-- --out DIR``)."""
    _install(session, "-r", "requirements/bench.txt")
    session.run("python", "benchmarks/gpu_bench.py", *session.posargs, env={"HF_HUB_OFFLINE": "1"})


@nox.session(python=PYTHON)
def serve(session: nox.Session) -> None:
    """The reference recommendation service (examples/recsys_service) on 127.0.0.1:8000; ``-- --help``."""
    _install(session)
    _install_examples(session)
    session.run("python", "examples/recsys_service/serve.py", *session.posargs, env={"HF_HUB_OFFLINE": "1"})


@nox.session(python=PYTHON)
def demo(session: nox.Session) -> None:
    """A tour of every capability on real (shared/data) or generated data."""
    _install(session)
    session.run("python", "demo/run.py", *session.posargs, env={"HF_HUB_OFFLINE": "1"})


NOTEBOOK_LIMIT_S = "600"  # per notebook; each takes 0.3-2.5 minutes on the shared 2-core machine


@nox.session(python=PYTHON)
def notebooks(session: nox.Session) -> None:
    """Regenerate the .ipynb from the jupytext percent scripts and execute every notebook.

    ``-- 00_tour`` runs only the named notebooks; ``-- --limit 300`` changes the per-notebook limit.
    A notebook that raises or overruns fails the session. Executed copies land in build/notebooks/
    (what ``nox -s docs`` shows as tutorials).
    """
    _install(session, "-r", "requirements/notebooks.txt")
    session.run(
        "python",
        "examples/notebooks/run_notebooks.py",
        "--limit",
        NOTEBOOK_LIMIT_S,
        *session.posargs,
        env={"HF_HUB_OFFLINE": "1"},
    )


@nox.session(python=PYTHON)
def docs(session: nox.Session) -> None:
    """Build the documentation site with warnings as errors, and check every public docstring.

    The tutorials are the executed notebooks of ``nox -s notebooks``; those missing or older than
    their script are executed first. ``-- serve`` serves the site on http://127.0.0.1:8000 instead.
    """
    _install(session, "-r", "requirements/docs.txt", "pytest")
    env = {"HF_HUB_OFFLINE": "1", "NO_MKDOCS_2_WARNING": "1"}
    if session.posargs[:1] == ["serve"]:
        session.run("mkdocs", "serve", "--dev-addr", "127.0.0.1:8000", env=env)
        return
    stale = [
        p.stem
        for p in sorted(Path("examples/notebooks").glob("[0-9][0-9]_*.py"))
        if not (Path("build/notebooks") / f"{p.stem}.ipynb").is_file()
        or (Path("build/notebooks") / f"{p.stem}.ipynb").stat().st_mtime < p.stat().st_mtime
    ]
    if stale:
        session.run(
            "python", "examples/notebooks/run_notebooks.py", "--limit", NOTEBOOK_LIMIT_S, *stale, env=env
        )
    session.run("python", "docs/_scripts/check_docstrings.py")
    session.run("mkdocs", "build", "--strict", env=env)
    # the built site in headless Chromium (skips, saying why, where /usr/bin/chromium is absent)
    session.run("pytest", "tests/test_docs_site.py", "-p", "no:cacheprovider", env=env)


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """ruff check and format check."""
    session.install("-r", "requirements/lint.txt")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session(python=PYTHON)
def typecheck(session: nox.Session) -> None:
    """mypy over the four packages."""
    _install(session, "mypy", "-r", "requirements/test.txt")
    session.run("mypy")


RAY_TESTS = (
    "tests/common/ann/test_conformance.py",
    "tests/common/ann/test_ray_sharded.py",
    "tests/recsys/test_ray_distributed.py",
    "tests/rag/test_ray_ingest.py",
    "tests/vision/test_ray_inference.py",
)


@nox.session(python=PYTHON)
def ray(session: nox.Session) -> None:
    """The Ray tests of issue 17 (sharded index, distributed evaluation and training, ingestion,
    batch inference), each on a local 2-CPU Ray cluster its fixture starts and shuts down. Installs
    the ``[ray]`` extras; without them (``nox -s tests``) these tests skip with the install command."""
    session.install(*CONSTRAINTS, "torch==2.13.0")
    session.install(
        *CONSTRAINTS,
        "-e",
        "packages/common[all,ray]",
        "-e",
        "packages/recsys[ray]",
        "-e",
        "packages/rag[ray]",
        "-e",
        "packages/vision[all,ray]",
        "-r",
        "requirements/test.txt",
    )
    session.run(
        "pytest",
        "-m",
        "ray",
        "-p",
        "no:cacheprovider",
        *RAY_TESTS,
        *session.posargs,
        env={"HF_HUB_OFFLINE": "1"},
    )
