"""The operator allowlist (harness.goldens.operators): what the catalog emits stays inside it, what touches
files, processes or global state is outside it by name, and a project extends it in its own
pyproject.toml, never from a golden directory."""

from __future__ import annotations

import pytest

from harness.goldens.layout import HarnessLayout
from harness.goldens.operators import FORBIDDEN, OPERATORS, forbidden, refusal, torchscript_problem
from harness.goldens.vetting import CODE_CARRYING, vet

from .conftest import REPO


def test_no_allowed_operator_is_a_forbidden_one():
    assert [op for op in OPERATORS if forbidden(op)] == []
    for op, what in (("aten::save", "touches files"), ("aten::from_file", "touches files"),
                     ("aten::_open_registration", "touches files"), ("prim::Print", "prints"),
                     ("aten::_set_grad_enabled", "global state"), ("profiler::_record_function_enter", "global")):
        assert what in refusal(op), op
    assert "not on the operator allowlist" in refusal("aten::softmax")
    assert len(FORBIDDEN) == 3


def _code_files(root):
    for path in sorted(root.rglob("*")):
        kind = HarnessLayout.kind_of(path.name)
        if path.is_file() and kind in CODE_CARRYING:
            yield kind, path


def test_the_generated_catalog_stays_inside_the_allowlist(generated_store):
    """The session's goldens (every flow and kind, made now with this torch) vet with no waiver."""
    seen = 0
    for kind, path in _code_files(generated_store):
        vet(kind, path.read_bytes(), path.name)
        seen += 1
    assert seen >= 15


@pytest.mark.slow
def test_regenerating_the_whole_catalog_stays_inside_the_allowlist(tmp_path):
    """Every case, made again with this torch: whatever a new torch emits must be added on purpose."""
    from .conftest import run_cli

    run_cli("regenerate-goldens", "--goldens", tmp_path / "goldens", check=0)
    for kind, path in _code_files(tmp_path / "goldens"):
        vet(kind, path.read_bytes(), path.name)


def test_torchscript_code_is_read_whole_methods_aliases_and_builtins():
    clean = {"m.py": "class M(Module):\n  def forward(self, x: Tensor) -> Tensor:\n"
                     "    _0 = torch.relu(x)\n    return ops.quantized.linear(_0, self.p, 1., 0)\n"}
    assert torchscript_problem(clean) is None
    hidden = {"m.py": "class M(Module):\n  def helper(self) -> None:\n    _1 = torch.save\n    _1(1, 'x')\n"}
    assert "calls aten::save, which touches files" in torchscript_problem(hidden)  # an alias is a reference
    assert "calls method tofile" in torchscript_problem({"m.py": "def f(x):\n  return x.tofile('p')\n"})
    assert "torchbind class __torch__.torch.classes.x.Evil" in torchscript_problem(
        {"m.py": "def f():\n  return __torch__.torch.classes.x.Evil()\n"})
    assert "calls print" in torchscript_problem({"m.py": "def f(x):\n  print(x)\n"})
    assert "calls method save_to" in torchscript_problem({"m.py": "def f(x):\n  return x.save_to()\n"})
    own = {"m.py": "class M(Module):\n  def mine(self) -> int:\n    return 1\n  def forward(self):\n"
                   "    return (self).mine()\n"}
    assert torchscript_problem(own) is None  # a method the archive defines, whose body is read too


def test_a_project_extends_the_allowlist_in_its_pyproject_never_with_a_forbidden_operator(tmp_path):
    from harness.config import ConfigError, operators

    (tmp_path / "pyproject.toml").write_text('[tool.bc-harness]\noperators = ["aten::softmax", "my_method"]\n')
    extra = operators(tmp_path)
    assert extra == {"aten::softmax", "my_method"} and refusal("aten::softmax", extra) is None
    assert torchscript_problem({"m.py": "def f(x):\n  return x.my_method()\n"}, extra) is None
    (tmp_path / "pyproject.toml").write_text('[tool.bc-harness]\noperators = ["aten::save"]\n')
    with pytest.raises(ConfigError, match="aten::save touches files; it is never allowed"):
        operators(tmp_path)


def test_the_committed_store_calls_only_allowed_operators():
    """Every code-carrying golden of every committed release, vetted with no waiver (the torchao
    checkpoints this install does not register are a load error, not an operator refusal)."""
    from harness.goldens.pickles import Refused
    from harness.goldens.streams import NotAdmitted

    refused = []
    for kind, path in _code_files(REPO / "serialized"):
        if kind == "package":
            continue  # vetted against the catalog's running modules: test_verify_agrees_with_replay
        try:
            vet(kind, path.read_bytes(), path.name)
        except NotAdmitted:
            pass
        except Refused as exc:
            refused.append(str(exc))
    assert refused == []
