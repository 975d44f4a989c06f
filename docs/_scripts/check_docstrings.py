"""Fail naming every public name of mlsys that has no docstring (run by ``nox -s docs``).

Public names: every name in the ``__all__`` of every public module (a module or package under
``packages/<dist>/src/mlsys/<dist>/`` with no ``_``-prefixed part in its dotted path, the same
modules the API reference shows), the public modules themselves, and the public methods and
properties of the public classes. A constant's docstring is the string literal right after its
assignment (what the API reference renders); a method may inherit its docstring from a base
class of the package (``Policy.select`` documents every policy's ``select``).

    python docs/_scripts/check_docstrings.py        # exit status 1 and a list when any is missing

Needs griffe (installed with ``mkdocstrings[python]``, ``requirements/docs.txt``): the check reads
the docstrings exactly as the site renders them.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(HERE))

from hooks import DISTS, public_modules  # noqa: E402


def _has_doc(obj: Any) -> bool:
    doc = getattr(obj, "docstring", None)
    return doc is not None and bool(doc.value.strip())


def _inherited_doc(cls: Any, name: str) -> bool:
    """Whether a base class of ``cls`` (resolvable by griffe) documents member ``name``."""
    try:
        bases = cls.mro()
    except Exception:  # an unresolvable base (a third-party class): no inherited docstring known
        return False
    for base in bases:
        member = base.members.get(name)
        if member is not None and _has_doc(member):
            return True
    return False


def missing_docstrings() -> list[str]:
    """Dotted names of the public modules, ``__all__`` names and public class members without a docstring."""
    import griffe

    extensions = griffe.load_extensions(f"{HERE / 'griffe_examples.py'}:ExampleSections")
    loader = griffe.GriffeLoader(
        search_paths=[str(REPO / "packages" / d / "src") for d in DISTS],
        extensions=extensions,
        docstring_parser=griffe.Parser.google,
    )
    for dist in DISTS:
        loader.load(f"mlsys.{dist}")
    loader.resolve_aliases(implicit=False, external=False)
    modules = loader.modules_collection
    missing: list[str] = []
    seen_classes: set[str] = set()
    for dotted in public_modules():
        module = modules[dotted]
        if not _has_doc(module):
            missing.append(f"{dotted} (module)")
        for entry in module.exports or []:
            name = entry if isinstance(entry, str) else entry.name
            if name.startswith("__"):
                continue
            try:
                obj = module[name]
                target = obj.final_target if obj.is_alias else obj
            except Exception as exc:  # a name in __all__ that does not exist
                missing.append(f"{dotted}.{name} (in __all__ but not found: {type(exc).__name__})")
                continue
            if not _has_doc(target):
                missing.append(f"{dotted}.{name} ({target.kind.value})")
            if target.is_class and target.path not in seen_classes:
                seen_classes.add(target.path)
                for member_name, member in target.members.items():
                    if member_name.startswith("_") or member.is_alias:
                        continue
                    method = member.is_function or "property" in getattr(member, "labels", set())
                    if method and not _has_doc(member) and not _inherited_doc(target, member_name):
                        missing.append(f"{dotted}.{name}.{member_name} ({member.kind.value})")
    return missing


def main() -> int:
    """Print the missing docstrings; exit status 1 when there is any."""
    missing = missing_docstrings()
    if missing:
        print(f"{len(missing)} public names without a docstring:")
        for name in missing:
            print(f"  {name}")
        return 1
    print(f"every public name of the {len(public_modules())} public modules has a docstring")
    return 0


if __name__ == "__main__":
    sys.exit(main())
