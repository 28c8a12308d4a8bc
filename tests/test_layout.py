"""The shape of the code: ruff-clean, no import cycles between the suite's modules, no private name imported
from another module, and the commands that only read results start without torch."""

from __future__ import annotations

import ast
import json
import re
import shutil
import subprocess
import sys

import pytest

from conftest import ROOT

# The suite's modules by import name: the top-level scripts and modules, and the library package's modules.
MODULE_FILES = {path.stem: path for path in ROOT.glob("*.py")} | {
    ".".join(path.relative_to(ROOT).with_suffix("").parts): path
    for path in (ROOT / "ftbench").rglob("*.py") if path.name != "__init__.py"}
MODULES = sorted(MODULE_FILES)


def imports_of(module: str) -> list[tuple[str, list[str]]]:
    """(imported suite module, names taken from it) for every import in the module, top level or inside a
    function (a lazy import still ties the two modules together)."""
    found = []
    for node in ast.walk(ast.parse(MODULE_FILES[module].read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(alias.name, []) for alias in node.names if alias.name in MODULES]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module in MODULES:
            found.append((node.module, [alias.name for alias in node.names]))
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            # from ftbench import runner: the names are modules of the package
            found += [(f"{node.module}.{alias.name}", []) for alias in node.names
                      if f"{node.module}.{alias.name}" in MODULES]
    return found


def test_the_module_list_holds_the_package():
    assert "ftbench.run_store" in MODULES and "config" in MODULES


def test_ruff_finds_nothing():
    ruff = shutil.which("ruff") or pytest.fail("ruff is not installed: pip install -r requirements-dev.txt")
    done = subprocess.run([ruff, "check", "."], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-3000:]


def test_no_import_cycles_between_the_suites_modules():
    graph = {module: {name for name, _ in imports_of(module)} - {module} for module in MODULES}
    cycles = []

    def visit(start: str, module: str, path: list[str]) -> None:
        for other in graph[module]:
            if other == start:
                cycles.append(path)
            elif other not in path and other > start:  # each cycle once, from its smallest module
                visit(start, other, path + [other])

    for module in MODULES:
        visit(module, module, [module])
    assert cycles == []


def test_no_private_name_is_imported_from_another_module():
    private = [(module, source, name) for module in MODULES for source, names in imports_of(module)
               for name in names if name.startswith("_") and name != "__version__"]
    assert private == []


@pytest.mark.parametrize("script", ["plot_results.py", "report.py", "run_status.py", "benchmark.py", "train_full.py",
                                    "train_qlora.py"])
def test_help_is_answered_without_importing_torch(script):
    probe = ("import json, runpy, sys; sys.argv = [sys.argv[1], '--help']\n"
             "try:\n    runpy.run_path(sys.argv[0], run_name='__main__')\nexcept SystemExit:\n    pass\n"
             "print(json.dumps(sorted(m for m in ('torch', 'peft') if m in sys.modules)))")
    done = subprocess.run([sys.executable, "-c", probe, script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []


def documented_keys() -> dict[str, set[str]]:
    """The keys the results schema's table (docs/results_schema.md) names per section: each row's first cell
    lists `section.key`, then keys of the same section (`history[]` is the key history)."""
    text = (ROOT / "docs" / "results_schema.md").read_text(encoding="utf-8")
    table = text[text.index("| key | meaning |"):].split("\n\n", 1)[0]
    found: dict[str, set[str]] = {}
    for row in table.splitlines()[2:]:
        names = re.findall(r"`([^`]+)`", row.split(" | ")[0])
        section, _, first = names[0].partition(".")
        found.setdefault(section, set()).update(name.removesuffix("[]") for name in [first, *names[1:]] if name)
    return found


def test_the_results_table_in_the_docs_documents_exactly_the_keys_in_code():
    from ftbench.run_store import RESULTS_KEYS

    documented = documented_keys()
    assert set(documented) == {"run_info", "train_info", "meta_info"}
    for section, keys in RESULTS_KEYS.items():
        assert documented[section] == keys, (section, documented[section] ^ keys)


def function_sizes() -> dict[str, int]:
    sizes = {}
    for module, path in MODULE_FILES.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                sizes[f"{module}.{node.name}"] = node.end_lineno - node.lineno + 1
    return sizes


def test_modules_and_functions_stay_small():
    """Each module has one job and reads top to bottom: under 500 lines; each function fits on a screen."""
    long_modules = {module: n for module, path in MODULE_FILES.items()
                    if (n := len(path.read_text(encoding="utf-8").splitlines())) >= 500}
    assert long_modules == {}
    assert {name: n for name, n in function_sizes().items() if n > 80} == {}


def test_every_method_is_declared_once_and_has_its_script():
    from ftbench.registry import all_methods

    methods = all_methods()
    scripts = {path.name for path in ROOT.glob("train_*.py")}
    assert scripts == {method.script for method in methods.values()}
    for name, method in methods.items():
        source = (ROOT / method.script).read_text(encoding="utf-8")
        assert f'main("{name}")' in source and "import" in source
        assert len(source.split('"""', 2)[2].strip().splitlines()) <= 6, f"{method.script} is more than a call"
    declared = [path.stem for path in (ROOT / "ftbench" / "methods").glob("*.py") if path.stem != "__init__"]
    owners = {name: [m for m in declared if f'name="{name}"' in (ROOT / "ftbench" / "methods" / f"{m}.py").read_text()]
              for name in methods}
    assert all(len(files) == 1 for files in owners.values()), owners


# The modules that run, reload, chart and sweep every method: they ask the registry, never a method's name.
METHOD_BLIND = ["ftbench/runner.py", "ftbench/model_loading.py", "ftbench/finish.py", "ftbench/trainer.py",
                "ftbench/resume.py", "ftbench/stopping.py", "ftbench/run_store.py", "inference.py", "plot_results.py"]


def test_the_runner_inference_and_charts_name_no_method():
    from ftbench.registry import method_names

    named = {}
    for relative in METHOD_BLIND:
        tree = ast.parse((ROOT / relative).read_text(encoding="utf-8"))
        strings = {node.value for node in ast.walk(tree)
                   if isinstance(node, ast.Constant) and isinstance(node.value, str)}
        found = sorted(strings & set(method_names()))
        if found:
            named[relative] = found
    assert named == {}
