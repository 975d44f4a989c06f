"""mkdocs hooks of the mlsys site: pages included from the repository, never copied into docs/.

* ``on_config``: fills the nav's "API reference" section with one page per public module.
* ``on_files``: adds, as generated files,
  - the repository's Markdown pages (``README.md``, package and benchmark READMEs, the reference
    service's README, ``CONTRIBUTING.md``) at their repository paths, so that their relative links
    keep working, plus every repository file those pages link to (plots, JSON tables);
  - one API page per public module (``api/<dotted name>.md`` holding ``::: <dotted name>``);
  - the executed notebooks from ``build/notebooks/`` (``nox -s notebooks``) as
    ``notebooks/<name>.ipynb``; where a notebook was not executed, its output-free copy from
    ``examples/notebooks/`` with a warning (so ``mkdocs build --strict`` fails until it is run).

A public module is every module or package under ``packages/<dist>/src/mlsys/<dist>/`` whose dotted
path has no part starting with ``_``.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

from mkdocs.plugins import event_priority
from mkdocs.structure.files import File, Files

log = logging.getLogger("mkdocs.hooks.mlsys")

REPO = Path(__file__).resolve().parents[2]
DISTS = ("common", "recsys", "rag", "vision")
PAGES = (
    "README.md",
    "CONTRIBUTING.md",
    *(f"packages/{d}/README.md" for d in DISTS),
    *(f"benchmarks/{d}/README.md" for d in DISTS),
    "examples/recsys_service/README.md",
    "examples/notebooks/README.md",
)
NOTEBOOKS_SRC = REPO / "examples" / "notebooks"
NOTEBOOKS_EXECUTED = REPO / "build" / "notebooks"
_LINK = re.compile(r"\]\(([^)\s#]+)(?:#[^)]*)?\)|src=\"([^\"#]+)\"")


def public_modules() -> list[str]:
    """Dotted names of every public module of the four packages, packages first, sorted."""
    names = []
    for dist in DISTS:
        root = REPO / "packages" / dist / "src"
        for path in sorted((root / "mlsys" / dist).rglob("*.py")):
            rel = path.relative_to(root).with_suffix("")
            parts = list(rel.parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            if any(p.startswith("_") for p in parts):
                continue
            names.append(".".join(parts))
    return sorted(set(names))


def api_page(module: str) -> str:
    """The src path of the API page of ``module``."""
    return f"api/{module}.md"


def on_config(config: Any) -> Any:
    """Fill the nav's ``API reference: []`` placeholder with one page per public module."""
    for entry in config["nav"] or []:
        if isinstance(entry, dict) and "API reference" in entry:
            groups: dict[str, list[dict[str, str]]] = {}
            for module in public_modules():
                dist = module.split(".")[1]
                groups.setdefault(f"mlsys.{dist}", []).append({module: api_page(module)})
            entry["API reference"] = [{name: pages} for name, pages in groups.items()]
    return config


def _linked_files(page: str) -> set[str]:
    """Repository files (not pages) a Markdown page links to, as repository-relative paths."""
    text = (REPO / page).read_text(encoding="utf-8")
    base = (REPO / page).parent
    found = set()
    for match in _LINK.finditer(text):
        target = match.group(1) or match.group(2)
        if "://" in target or target.startswith(("mailto:", "/")):
            continue
        path = (base / target).resolve()
        if path.is_file() and path.is_relative_to(REPO) and path.suffix != ".md":
            found.add(path.relative_to(REPO).as_posix())
    return found


@event_priority(100)  # before mkdocs-jupyter's on_files, which turns .ipynb files into pages
def on_files(files: Files, config: Any) -> Files:
    """Add the repository pages, their linked files, the API pages and the tutorials."""
    extra: set[str] = set()
    for page in PAGES:
        files.append(File.generated(config, page, abs_src_path=str(REPO / page)))
        extra |= _linked_files(page)
    for rel in sorted(extra):
        if files.get_file_from_path(rel) is None:
            files.append(File.generated(config, rel, abs_src_path=str(REPO / rel)))
    for module in public_modules():
        content = f"# `{module}`\n\n::: {module}\n"
        files.append(File.generated(config, api_page(module), content=content))
    for script in sorted(NOTEBOOKS_SRC.glob("[0-9][0-9]_*.py")):
        executed = NOTEBOOKS_EXECUTED / f"{script.stem}.ipynb"
        if executed.is_file() and executed.stat().st_mtime >= script.stat().st_mtime:
            source_dir = NOTEBOOKS_EXECUTED.parent
        else:
            source_dir = NOTEBOOKS_SRC.parent
            log.warning(
                "tutorial %s: no executed copy newer than %s in %s; showing it without outputs "
                "(run `nox -s notebooks`)",
                script.stem,
                script.name,
                NOTEBOOKS_EXECUTED,
            )
        # a real (not generated) file: mkdocs-jupyter reads notebooks from their source path
        files.append(
            File(
                f"notebooks/{script.stem}.ipynb",
                src_dir=str(source_dir),
                dest_dir=config["site_dir"],
                use_directory_urls=config["use_directory_urls"],
            )
        )
    return files
