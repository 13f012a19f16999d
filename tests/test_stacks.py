"""Quantization stacks are folders: the core names none of them, and a new stack is a new folder
plus one registry line (harness.stacks)."""

from __future__ import annotations

import ast
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tokenize
from pathlib import Path

import pytest

from harness import stacks

from .conftest import REPO

HARNESS = REPO / "harness"
STACK_FOLDERS = [p for p in (HARNESS / "stacks").iterdir() if p.is_dir() and (p / "__init__.py").exists()]


def _core_modules() -> list[Path]:
    """Every module of the harness outside a stack's folder (the registry included)."""
    return [p for p in sorted(HARNESS.rglob("*.py"))
            if not any(folder in p.parents for folder in STACK_FOLDERS)]


def _imported(path: Path) -> set[str]:
    """The absolute names of the modules ``path`` imports (relative imports resolved)."""
    package = ".".join(path.relative_to(REPO).with_suffix("").parts[:-1])
    if path.name == "__init__.py":
        package = ".".join(path.relative_to(REPO).parts[:-1])
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package if node.level else ""
            module = ".".join(filter(None, [base, node.module]))
            names.add(module)
            names.update(f"{module}.{a.name}" for a in node.names)
    return names


def test_the_registry_lists_every_stack_folder_and_each_satisfies_the_interface():
    assert sorted(stacks.REGISTRY) == sorted(f"harness.stacks.{p.name}" for p in STACK_FOLDERS)
    for stack in stacks.registered():
        assert stack.name and stack.description and stack.flows
        assert all(flow.name and flow.description for flow in stack.flows)
        assert all(op.count("::") == 1 for op in stack.operators)
    names = stacks.flow_names()
    assert len(names) == len(set(names)) and stacks.default_flow() == names[0]


def test_no_core_module_imports_a_stack():
    stack_modules = {f"harness.stacks.{p.name}" for p in STACK_FOLDERS}
    offenders = {str(p.relative_to(REPO)): sorted(n for n in _imported(p)
                                                  if any(n == s or n.startswith(s + ".") for s in stack_modules))
                 for p in _core_modules()}
    assert {k: v for k, v in offenders.items() if v} == {}


def _words_of_stacks() -> tuple[set[str], set[str]]:
    """(flow names, names of the stacks' libraries and packages)."""
    flows = set(stacks.flow_names())
    packages = {lib for s in stacks.registered() for lib in s.libraries}
    packages |= {re.split(r"[=<>]", p)[0] for s in stacks.registered() for p in s.packages("nightly")}
    packages |= {op.split("::")[0] for s in stacks.registered() for op in s.operators}
    return flows, packages


def test_no_core_module_names_a_flow_or_a_stack_library():
    """No string of core code is a flow's name (no ``case.flow == "fx"``), and no line of core code
    or its comments names a stack's library or package: what is stack-specific lives in the stack."""
    flows, packages = _words_of_stacks()
    library_word = re.compile(r"\b(?:" + "|".join(map(re.escape, sorted(packages))) + r")\b")
    found = []
    for path in _core_modules():
        registry = path == HARNESS / "stacks" / "__init__.py"
        for token in tokenize.generate_tokens(io.StringIO(path.read_text()).readline):
            where = f"{path.relative_to(REPO)}:{token.start[0]}"
            if token.type == tokenize.STRING and not registry:
                try:
                    value = ast.literal_eval(token.string)
                except (ValueError, SyntaxError):
                    value = None
                if value in flows:
                    found.append(f"{where}: the flow name {value!r}")
            if token.type in (tokenize.STRING, tokenize.COMMENT, tokenize.NAME) and not registry \
                    and library_word.search(token.string):
                found.append(f"{where}: {library_word.search(token.string).group()}")
    assert found == []


TOY_STACK = '''
"""A toy stack: int8 weights with one scale per tensor, dequantized in forward."""

import torch


class ToyLinear(torch.nn.Module):
    def __init__(self, linear):
        super().__init__()
        weight = linear.weight.detach()
        scale = weight.abs().max() / 127
        self.register_buffer("weight", torch.round(weight / scale).to(torch.int8))
        self.register_buffer("scale", scale.reshape(1))
        self.register_buffer("bias", linear.bias.detach().clone())

    def forward(self, x):
        return torch.nn.functional.linear(x, self.weight.float() * self.scale, self.bias)


def toy_quantize(module):
    for name, child in list(module.named_children()):
        if isinstance(child, torch.nn.Linear):
            setattr(module, name, ToyLinear(child))
        else:
            toy_quantize(child)
    return module


def flows():
    from harness.stacks import Flow

    class WeightOnly(Flow):
        name = "toy-weight-only"
        description = "build returns the float module; its Linears get int8 weights and one scale each"

        def runnable(self, case, built, example):
            return toy_quantize(built)

        def skeleton(self, case, built, example):
            return toy_quantize(built)

        def scripted(self, case, built, example, trace):
            return super().scripted(case, toy_quantize(built), example, trace)

    return (WeightOnly(),)


class Toy:
    name = "toy"
    description = "a toy stack of the house test"
    libraries = ()
    operators = frozenset()

    @property
    def flows(self):
        return flows()

    def packages(self, torch):
        return []

    def versions(self):
        return {"toy": "1.0"}

    def library_problem(self, library):
        return "no library"

    def set_label(self, torch):
        return None

    def torch_for(self, release, torch):
        return None


STACK = Toy()
'''

TOY_CASES = '''
import torch

from harness.catalog import Case, FloatInput

CASES = [Case("toy-mlp", lambda: torch.nn.Sequential(torch.nn.Linear(16, 8), torch.nn.ReLU(), torch.nn.Linear(8, 4)),
              FloatInput((3, 16), "randn"), ("state_dict", "export", "traced"), flow="toy-weight-only",
              backend_agnostic=True, min_torch="2.1", description="a toy-quantized MLP")]
'''


def test_a_new_stack_is_a_folder_and_one_registry_line(tmp_path):
    """A copy of the harness with a toy stack added (its folder, and one line in the registry) makes
    goldens of a toy case and replays them, through the commands a user runs; no core file changes."""
    copy = tmp_path / "src"
    shutil.copytree(HARNESS, copy / "harness", ignore=shutil.ignore_patterns("__pycache__"))
    (copy / "harness" / "stacks" / "toy").mkdir()
    (copy / "harness" / "stacks" / "toy" / "__init__.py").write_text(TOY_STACK)
    registry = copy / "harness" / "stacks" / "__init__.py"
    text = registry.read_text()
    registry.write_text(text.replace('REGISTRY = (\n', 'REGISTRY = (\n    "harness.stacks.toy",\n', 1))
    changed = [p.relative_to(copy) for p in (copy / "harness").rglob("*") if p.is_file()
               and "toy" not in p.parts and (HARNESS / p.relative_to(copy / "harness")).read_bytes() != p.read_bytes()]
    assert changed == [Path("harness/stacks/__init__.py")]
    added = set(registry.read_text().splitlines()) - set(text.splitlines())
    assert added == {'    "harness.stacks.toy",'}

    fixtures = tmp_path / "fixtures"
    fixtures.mkdir()
    (fixtures / "toy_cases.py").write_text(TOY_CASES)
    goldens = tmp_path / "goldens"
    env = {**os.environ, "PYTHONPATH": str(copy), "CI": ""}

    def harness(*args):
        return subprocess.run([sys.executable, "-c", "import sys; from harness.cli import main, regenerate_main; "
                               "sys.exit((regenerate_main if sys.argv[1] == 'regenerate' else main)(sys.argv[2:]))",
                               *args], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)

    where = subprocess.run([sys.executable, "-c", "import harness; print(harness.__file__)"], env=env, cwd=tmp_path,
                           capture_output=True, text=True, check=True).stdout.strip()
    assert where.startswith(str(copy)), where
    listed = harness("main", "cases", "--fixtures", str(fixtures), "--goldens", str(goldens))
    assert listed.returncode == 0 and "toy-weight-only" in listed.stdout, listed.stderr
    made = harness("regenerate", "--fixtures", str(fixtures), "--goldens", str(goldens))
    assert made.returncode == 0, made.stdout + made.stderr
    report = tmp_path / "results.json"
    replayed = harness("main", "replay", "--fixtures", str(fixtures), "--goldens", str(goldens), "--json", str(report))
    assert replayed.returncode == 0, replayed.stdout + replayed.stderr
    results = json.loads(report.read_text())
    records = results["results"] if isinstance(results, dict) else results
    verdicts = {(r["artifact"], r["verdict"]) for r in records if r["case"] == "toy-mlp"}
    assert verdicts == {("state_dict", "pass"), ("export", "pass"), ("traced", "pass")}, records


@pytest.mark.parametrize("torch_release, beside", [
    ("1.13.1", []), ("2.4.1", ["torchao==0.6.1"]), ("2.9.1", []),
    # torchao's safetensors checkpoints (0.14 on) need safetensors and numpy beside it
    ("2.10.0", ["torchao==0.16.0", "safetensors>=0.4", "numpy>=1.26"]),
    # ExecuTorch pairs with 2.12 and 2.13 (its runtime links one torch), with what it imports
    ("2.12.1", ["torchao==0.17.0", "safetensors>=0.4", "numpy>=1.26", "executorch==1.3.1", "flatbuffers>=24",
                "ruamel.yaml>=0.17", "pyyaml>=6"]),
    ("2.13.0", ["torchao==0.18.0", "safetensors>=0.4", "numpy>=1.26", "executorch==1.5.1", "flatbuffers>=24",
                "ruamel.yaml>=0.17", "pyyaml>=6"]),
    ("2.99.0", ["torchao"]),  # PT2E needs some torchao; none pairs yet
])
def test_what_installs_beside_torch_is_each_stack_s_pair_once(torch_release, beside):
    assert stacks.packages(torch_release) == beside
