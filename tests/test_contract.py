"""dvc.yaml, the Snakefile and params.yaml hold one truth.

- every DVC stage runs exactly the Snakemake rule of the same name;
- every rule output lies under exactly one stage's outs/metrics, and every rule
  input under that stage's deps;
- the params section a stage's module reads is the one its stage declares;
- every rule has a log and a benchmark; training rules declare gpu, mem_mb, runtime.
"""

import re
from pathlib import Path

import pytest
import yaml

from instructflow import config

ROOT = Path(__file__).resolve().parents[1]
TRAINING_RULES = ("base", "sft", "safety", "evaluate")


@pytest.fixture(scope="module")
def dvc_stages():
    return yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


@pytest.fixture(scope="module")
def rules():
    from snakemake.api import SnakemakeApi
    from snakemake.settings.types import ConfigSettings, ResourceSettings, StorageSettings

    with SnakemakeApi() as api:
        wf = api.workflow(resource_settings=ResourceSettings(), config_settings=ConfigSettings(),
                          storage_settings=StorageSettings(), snakefile=ROOT / "Snakefile", workdir=ROOT)
        return {r.name: r for r in wf._workflow.rules if r.name != "all"}


def _paths(entries) -> list[str]:
    return [next(iter(e)) if isinstance(e, dict) else e for e in entries or []]


def _under(path: str, roots: list[str]) -> list[str]:
    return [r for r in roots if path == r or path.startswith(r.rstrip("/") + "/")]


def test_one_stage_per_rule(dvc_stages, rules):
    assert set(dvc_stages) == set(rules)
    for name, stage in dvc_stages.items():
        assert f"--allowed-rules {name} -- {name}" in stage["cmd"], name


def test_rule_outputs_under_exactly_one_stage(dvc_stages, rules):
    for name, rule in rules.items():
        for out in map(str, rule.output):
            owners = [s for s, st in dvc_stages.items()
                      if _under(out, _paths(st.get("outs")) + _paths(st.get("metrics")))]
            assert owners == [name], f"rule {name} output {out} owned by stages {owners}"


def test_rule_inputs_under_stage_deps(dvc_stages, rules):
    for name, rule in rules.items():
        deps = _paths(dvc_stages[name]["deps"])
        for inp in map(str, rule.input):
            assert _under(inp, deps), f"rule {name} input {inp} is not under any dep of stage {name}"


def test_stage_outs_are_produced_by_its_rule(dvc_stages, rules):
    for name, stage in dvc_stages.items():
        outputs = [str(o) for o in rules[name].output]
        for out in _paths(stage.get("outs")) + _paths(stage.get("metrics")):
            assert any(o == out or o.startswith(out + "/") for o in outputs), f"{name}: {out} made by no rule output"


# Keys of another stage's section that a stage reads on purpose: the filter
# decontaminates against the evaluation suites, so a new suite must rerun it.
CROSS_SECTION_KEYS = {"filter": {"evaluate.suites"}}


def test_params_declared_match_sections_read(dvc_stages):
    sections = {"base": "model"}
    for name, stage in dvc_stages.items():
        module = "".join(f.read_text() for f in _entry_files(name))
        read = set(re.findall(r'config\.load\("(\w+)"', module))
        declared = set(stage["params"]) - {"seed"} - CROSS_SECTION_KEYS.get(name, set())
        assert read == declared == {sections.get(name, name)}, name
        for key in CROSS_SECTION_KEYS.get(name, set()):
            assert key in stage["params"], f"{name} must declare {key}"
        assert "seed" in stage["params"]
        for f in _entry_files(name):
            assert _under(f.relative_to(ROOT).as_posix(), stage["deps"]), f"{name}: {f} not a dep"


def test_params_file_matches_schema_and_sections():
    params = config.read_params(ROOT / "params.yaml")
    config.validate_params(params)
    assert set(params) == {"seed", *config.SECTIONS}
    for section in config.SECTIONS:
        cfg, seed = config.load(section, ROOT / "params.yaml")
        assert seed == params["seed"]


def test_every_rule_logs_and_benchmarks(rules):
    for name, rule in rules.items():
        assert [str(x) for x in rule.log] == [f"logs/{name}.log"]
        assert str(rule.benchmark) == f"benchmarks/{name}.tsv"
    for name in TRAINING_RULES:
        assert {"gpu", "mem_mb", "runtime"} <= set(rules[name].resources.keys()), name


def test_logs_and_caches_are_git_ignored():
    ignored = (ROOT / ".gitignore").read_text().splitlines()
    for entry in (".snakemake/", "logs/", "benchmarks/", "/models/", "/data/raw/"):
        assert entry in ignored


PKG = ROOT / "src" / "instructflow"


def _module_file(dotted: str) -> Path | None:
    """File of a package module: `evaluate` -> evaluate.py or evaluate/__init__.py;
    `evaluate.judges` -> evaluate/judges.py. None when it is not a module (a name)."""
    base = PKG.joinpath(*dotted.split("."))
    if (base / "__init__.py").is_file():
        return base / "__init__.py"
    return base.with_suffix(".py") if base.with_suffix(".py").is_file() else None


def _entry_files(stage: str) -> list[Path]:
    """What `python -m instructflow.<stage>` runs: the module, or a subpackage's __init__ and __main__."""
    files = [_module_file(stage)]
    if files[0].name == "__init__.py" and (files[0].parent / "__main__.py").is_file():
        files.append(files[0].parent / "__main__.py")
    return files


def _package_imports(stage: str) -> set[str]:
    """Files of the package that a stage runs, transitively (nested imports, subpackages,
    and the __init__ of every package a submodule sits in, included); paths from the repo root."""
    import ast

    seen: set[Path] = set()
    todo = list(_entry_files(stage))
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        parts = list(path.relative_to(PKG).with_suffix("").parts)
        package = parts[:-1] if parts[-1] not in ("__init__", "__main__") else parts[:-1]
        for i in range(1, len(package) + 1):  # importing a.b runs a/__init__.py
            todo.append(_module_file(".".join(package[:i])))
        for node in ast.walk(ast.parse(path.read_text())):
            targets = []
            if isinstance(node, ast.ImportFrom) and node.level >= 1:
                base = package[:len(package) - (node.level - 1)]
                mod = base + (node.module.split(".") if node.module else [])
                targets = [mod] + [mod + [a.name] for a in node.names]
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("instructflow."):
                mod = node.module.split(".")[1:]
                targets = [mod] + [mod + [a.name] for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name.split(".")[1:] for a in node.names if a.name.startswith("instructflow.")]
            for t in targets:
                for i in range(1, len(t) + 1):
                    f = _module_file(".".join(t[:i])) if t[:i] else None
                    if f is not None:
                        todo.append(f)
    return {f.relative_to(ROOT).as_posix() for f in seen}


def test_code_deps_are_exactly_the_modules_a_stage_runs(dvc_stages):
    """A stage depends on every module of the package it runs, and on no other.
    A dep may name a module file or a subpackage folder (covering its files)."""
    for name, stage in dvc_stages.items():
        declared = [d for d in stage["deps"] if d.startswith("src/instructflow")]
        needed = _package_imports(name)
        missing = sorted(f for f in needed if not _under(f, declared))
        unused = sorted(d for d in declared if not any(_under(f, [d]) for f in needed))
        assert not missing and not unused, f"{name}: missing deps {missing}, unused deps {unused}"


def _late_main_guards(source: str) -> list[int]:
    """Line numbers of `if __name__ == "__main__":` blocks that are not a module's last statement."""
    import ast

    body = ast.parse(source).body
    return [node.lineno for node in body[:-1]
            if isinstance(node, ast.If) and isinstance(node.test, ast.Compare)
            and isinstance(node.test.left, ast.Name) and node.test.left.id == "__name__"
            and any(isinstance(c, ast.Constant) and c.value == "__main__" for c in node.test.comparators)]


def test_main_guards_come_after_everything_a_module_defines():
    """`python -m instructflow.X` runs the guard where it stands: a definition below it does not
    exist yet when main() runs (bench.py's `--malloc-child` died on a NameError that way in CI)."""
    assert _late_main_guards("def main(): pass\nif __name__ == '__main__':\n    main()\nX = 1\n") == [2]
    assert _late_main_guards("X = 1\ndef main(): pass\nif __name__ == '__main__':\n    main()\n") == []
    late = {str(path.relative_to(ROOT)): lines for path in sorted((ROOT / "src" / "instructflow").rglob("*.py"))
            if (lines := _late_main_guards(path.read_text()))}
    assert not late, f"__main__ guard before later top-level code: {late}"
