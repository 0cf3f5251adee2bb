"""The layer rule (README "Architecture", DESIGN.md section 1), checked on every import.

Data flows one way: lake jobs -> release layer -> service. A module may import its own
layer and the layers below it, never one above. Every import statement counts, those inside
functions too (a lazy import is still a dependency).
"""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import REPO

LAYERS: dict[str, int] = {
    "conf": 0,                       # typed settings and the error classes
    "algorithms": 1,                 # shared pure algorithms (no lake, no Spark session)
    "evaluation.metrics": 1,         # every metric once, used by training and index tuning
    "evaluation.metrics_catalog": 1,  # ... its catalogue metrics (coverage, novelty, ...)
    "evaluation.metrics_input": 1,   # ... and its input checks
    "serving_export": 1,             # the package itself holds nothing
    "serving_export.index": 1,       # FAISS shards: build, tune, load (numpy in, files out)
    "jobs": 2,                       # lake I/O, the table catalog and the lake jobs
    "training": 3,                   # the ranker's examples, training loop and export
    "evaluation": 3,                 # offline evaluation, the gate, registry, protocols
    "serving_export.release": 4,     # reads the lake and the verdict, writes releases
    "serving_export.service": 5,     # reads releases only
    "recpipe": 6,                    # the command line, the stage table, runs and status
    "dags": 7,
    "bench": 7,
}
"""Layer of each package or module (the longest matching prefix wins)."""
PACKAGES = ("conf", "algorithms", "jobs", "training", "evaluation", "serving_export",
            "recpipe", "dags", "bench")
MAX_LINES = 400
"""Largest module size in lines; larger modules hold several concepts and are split."""


def layer_of(module: str) -> int | None:
    """The layer of a dotted module name, or None for a module outside the packages."""
    parts = module.split(".")
    for n in range(len(parts), 0, -1):
        layer = LAYERS.get(".".join(parts[:n]))
        if layer is not None:
            return layer
    return None


def module_name(path: Path) -> str:
    rel = path.relative_to(REPO).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def imported(tree: ast.Module, module: str) -> list[tuple[int, str]]:
    """(line, dotted name) of every module imported anywhere in ``tree``."""
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the importing module's package
                base = module.split(".")[: -node.level]
                name = ".".join([*base, node.module] if node.module else base)
            else:
                name = node.module or ""
            out.append((node.lineno, name))
            # ``from pkg import sub`` may name a submodule: judge that too
            out += [(node.lineno, f"{name}.{alias.name}") for alias in node.names]
    return out


def source_files() -> list[Path]:
    return sorted(p for pkg in PACKAGES for p in (REPO / pkg).rglob("*.py"))


def test_the_layer_table_covers_every_package():
    for path in source_files():
        assert layer_of(module_name(path)) is not None, path


def test_layer_of_takes_the_longest_prefix():
    assert layer_of("evaluation.metrics") == 1
    assert layer_of("evaluation.gate") == 3
    assert layer_of("serving_export.index.shards") == 1
    assert layer_of("serving_export.service.app") == 5
    assert layer_of("numpy") is None


def test_the_walk_sees_imports_inside_functions():
    tree = ast.parse("def f():\n    from serving_export.service import app\n")
    names = [name for _, name in imported(tree, "jobs.x")]
    assert "serving_export.service.app" in names


def test_no_module_imports_a_layer_above_its_own():
    violations = []
    for path in source_files():
        module = module_name(path)
        own = layer_of(module)
        for line, name in imported(ast.parse(path.read_text()), module):
            other = layer_of(name)
            if other is not None and other > own:
                violations.append(f"{path.relative_to(REPO)}:{line}: {module} (layer {own}) "
                                  f"imports {name} (layer {other})")
    assert not violations, "\n".join(violations)


def test_modules_stay_small():
    sizes = {p.relative_to(REPO): len(p.read_text().splitlines()) for p in source_files()}
    large = {str(p): n for p, n in sizes.items() if n > MAX_LINES}
    assert not large, f"split these by concept: {large}"


def test_every_package_is_installed():
    """A package missing from setup.cfg imports in the checkout but not in a task that runs
    elsewhere (an Airflow task's working directory)."""
    import configparser

    cfg = configparser.ConfigParser()
    cfg.read(REPO / "setup.cfg")
    include = {line.strip().rstrip("*") for line in
               cfg["options.packages.find"]["include"].splitlines() if line.strip()}
    assert set(PACKAGES) - {"dags"} <= include


def test_the_service_reads_releases_and_nothing_else_of_ours():
    """The service imports the release reader (and the ``CURRENT`` pointer), the index loader
    and the settings: never the lake, the jobs, training or evaluation."""
    allowed = ("conf", "serving_export.service", "serving_export.release.reader",
               "serving_export.release.format", "serving_export.release.publish",
               "serving_export.index")
    found = []
    for path in sorted((REPO / "serving_export" / "service").rglob("*.py")):
        module = module_name(path)
        for line, name in imported(ast.parse(path.read_text()), module):
            if layer_of(name) is not None and name != "serving_export" and not any(
                    name == a or name.startswith(a + ".") for a in allowed):
                found.append(f"{path.relative_to(REPO)}:{line}: {name}")
    assert not found, "\n".join(found)
