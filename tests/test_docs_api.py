"""The API reference is complete: every public name of `interpolant_rl` and of
`interpolant_rl.testing` has a `::: module.Name` block on some page under `docs/api/`, and every
such block points at something that exists. Pure Python: no mkdocs build."""

import importlib
import inspect
import re
from pathlib import Path

import pytest


API_DOCS = Path(__file__).resolve().parents[1] / "docs" / "api"
# `::: dotted.path` at the start of a line (mkdocstrings' autodoc syntax).
AUTODOC = re.compile(r"^:::\s+([A-Za-z_][\w.]*)\s*$", re.MULTILINE)
# Public modules, with submodules documented as a whole rather than name by name.
MODULES = {
    "interpolant_rl": set(),
    "interpolant_rl.nn": set(),
    "interpolant_rl.agents": set(),
    "interpolant_rl.data": set(),
    "interpolant_rl.train": set(),
    "interpolant_rl.objectives": set(),
    "interpolant_rl.testing": {"strategies", "exact_tilt"},
}


def documented_paths() -> dict[str, list[str]]:
    """Every `::: path` under docs/api/, mapped to the pages that document it."""
    paths: dict[str, list[str]] = {}
    for page in sorted(API_DOCS.rglob("*.md")):
        for path in AUTODOC.findall(page.read_text(encoding="utf-8")):
            paths.setdefault(path, []).append(page.relative_to(API_DOCS).as_posix())
    return paths


def public_names(module_name: str, excluded: set[str]) -> list[str]:
    """Names a user reaches as `module.Name`: not underscored, not a submodule, and not a
    helper imported from outside the package (e.g. `importlib.metadata.version`)."""
    module = importlib.import_module(module_name)
    names = []
    for name in dir(module):
        if name.startswith("_") or name in excluded:
            continue
        value = getattr(module, name)
        if inspect.ismodule(value):
            continue
        if inspect.isclass(value) or inspect.isroutine(value):
            if not getattr(value, "__module__", "").startswith("interpolant_rl"):
                continue
        names.append(name)
    return names


def resolve(path: str) -> object:
    """Import the longest module prefix of a dotted path, then follow attributes."""
    parts = path.split(".")
    for split in range(len(parts), 0, -1):
        try:
            value = importlib.import_module(".".join(parts[:split]))
        except ImportError:
            continue
        for attribute in parts[split:]:
            value = getattr(value, attribute)
        return value
    raise ImportError(path)


def test_api_pages_exist():
    assert API_DOCS.is_dir(), f"{API_DOCS} is missing"
    assert documented_paths(), f"no '::: name' blocks under {API_DOCS}"


@pytest.mark.parametrize("module_name", sorted(MODULES))
def test_every_public_name_is_documented(module_name):
    names = public_names(module_name, MODULES[module_name])
    assert names, f"{module_name} exports nothing?"
    documented = documented_paths()
    missing = [name for name in names if f"{module_name}.{name}" not in documented]
    assert not missing, (
        f"public names of {module_name} without a '::: {module_name}.<Name>' block under "
        f"docs/api/: {', '.join(missing)}"
    )


@pytest.mark.parametrize("module_name", sorted(MODULES))
def test_documented_submodules_exist(module_name):
    for submodule in sorted(MODULES[module_name]):
        path = f"{module_name}.{submodule}"
        assert path in documented_paths(), f"no '::: {path}' block under docs/api/"


def test_every_documented_path_exists():
    broken = []
    for path, pages in documented_paths().items():
        try:
            resolve(path)
        except (ImportError, AttributeError) as error:
            broken.append(f"{path} ({', '.join(pages)}): {error!r}")
    assert not broken, "'::: path' blocks that do not resolve:\n" + "\n".join(broken)
