"""The module structure: no import cycle, and reading results does not load models or methods.

(The layers themselves are import-linter contracts in pyproject.toml, run by `make lint`.)
"""

import json
import subprocess
import sys

import grimp


def test_no_import_cycle():
    graph = grimp.build_graph("mmunlearn")
    cycles = []
    for module in sorted(graph.modules):
        for imported in graph.find_modules_directly_imported_by(module):
            back = graph.find_shortest_chain(importer=imported, imported=module)
            if back is not None and imported != module:
                cycles.append((module, *back))
    assert not cycles, f"import cycles: {cycles[:3]}"


def test_no_import_cycle_check_sees_one():  # the check above is not vacuous
    graph = grimp.build_graph("mmunlearn")
    graph.add_import(importer="mmunlearn.errors", imported="mmunlearn.cli")
    assert graph.find_shortest_chain(importer="mmunlearn.cli", imported="mmunlearn.errors") is not None
    assert graph.find_shortest_chain(importer="mmunlearn.errors", imported="mmunlearn.cli") is not None


def loaded_after(statement: str) -> list[str]:
    code = f"import sys; {statement}; import json; print(json.dumps(sorted(m for m in sys.modules if m.startswith('mmunlearn'))))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return json.loads(out)


def test_import_report_does_not_load_models_or_methods():
    loaded = loaded_after("import mmunlearn.reporting")
    heavy = [
        m
        for m in loaded
        if m.split(".")[-1] != "mmunlearn"
        and m.split(".")[1] in {"models", "unlearn", "protectors", "train", "metrics", "data", "benchmarking"}
    ]
    assert not heavy, heavy
    assert len(loaded) < 20, loaded
    assert "torch" not in loaded_torch("import mmunlearn.reporting")


def loaded_torch(statement: str) -> str:
    code = f"import sys; {statement}; print('torch' if 'torch' in sys.modules else '')"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout


def test_import_mmunlearn_is_lazy_and_names_resolve():
    assert len(loaded_after("import mmunlearn")) <= 3
    assert "mmunlearn.unlearn.ccu" in loaded_after("import mmunlearn; mmunlearn.UNLEARNERS")


def test_the_api_verbs_are_not_shadowed_by_submodules():
    code = (
        "import pkgutil, importlib, mmunlearn\n"
        "for m in pkgutil.walk_packages(mmunlearn.__path__, 'mmunlearn.'):\n"
        "    if not m.name.endswith('__main__'): importlib.import_module(m.name)\n"
        "print(all(callable(getattr(mmunlearn, v)) and not hasattr(getattr(mmunlearn, v), '__path__')"
        " for v in ('forget', 'protect', 'bench', 'report', 'train_model')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "True"
