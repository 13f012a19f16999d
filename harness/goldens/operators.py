"""The operators a golden may call: one allowlist for TorchScript code, lite-interpreter bytecode
and torch.export programs, derived from what the catalog emits.

A golden that carries code names the operators it runs: TorchScript code calls ``torch.add`` and
``ops.quantized.linear`` (the operators ``aten::add``, ``quantized::linear``), a lite archive's
bytecode lists ``aten::add`` with its overload, a .pt2 program's nodes target
``torch.ops.aten.add.Tensor``. Each is read as ``namespace::name`` and must be on ``OPERATORS``:
the quantized, aten math and shape operators that the catalog's goldens of every committed torch
release call (``tests/test_operators.py`` holds the catalog to it). Whatever touches files,
processes or global state (``aten::save``, ``aten::from_file``, ``prim::Print``, the profiler) is
named in ``FORBIDDEN`` and refused with the reason; a stack adds the operators of its own library
(harness.stacks); any other operator is refused as unknown until it is added here, or to ``operators`` of ``[tool.bc-harness]`` in the project's pyproject.toml
for a project's own models (that file is the project's, not the golden directory's: the allowlist
is not something a golden can extend).

TorchScript code also calls methods (``self.conv.forward``): their names must be on ``METHODS``
or be methods the archive's own code defines (whose bodies are checked as well), and it calls a
few builtins (``int``, ``annotate``, ...) and archive-local aliases of the functions it defines.
"""

from __future__ import annotations

import ast
import re

from harness import stacks

#: every operator the catalog's goldens call, as namespace::name (regenerating the catalog stays
#: inside it: tests/test_operators.py)
OPERATORS = frozenset({
    # aten
    "aten::Bool", "aten::Float", "aten::Int", "aten::__contains__", "aten::__getitem__",
    "aten::__is__", "aten::__isnot__", "aten::__not__", "aten::_assert_tensor_metadata",
    "aten::_convolution", "aten::_int_mm", "aten::_native_batch_norm_legit_no_training",
    "aten::_set_item", "aten::_to_copy", "aten::adaptive_avg_pool2d", "aten::add", "aten::add_", "aten::addmm",
    "aten::all", "aten::amax", "aten::amin", "aten::aminmax", "aten::any", "aten::append",
    "aten::batch_norm", "aten::chunk", "aten::clamp", "aten::contiguous", "aten::conv1d",
    "aten::conv2d", "aten::conv3d", "aten::conv_transpose2d", "aten::convolution", "aten::copy_", "aten::dequantize",
    "aten::detach", "aten::device", "aten::dim", "aten::div", "aten::eq", "aten::expand",
    "aten::extend", "aten::flatten", "aten::floor_divide", "aten::floordiv", "aten::format",
    "aten::full_like", "aten::ge", "aten::gelu", "aten::gt", "aten::hardsigmoid",
    "aten::hardsigmoid_", "aten::hardtanh", "aten::hardtanh_", "aten::index_select",
    "aten::embedding", "aten::layer_norm", "aten::le", "aten::len", "aten::linear", "aten::list", "aten::lt",
    "aten::matmul", "aten::max", "aten::max_pool2d", "aten::mean", "aten::min", "aten::mm", "aten::mul", "aten::ne",
    "aten::neg", "aten::new_full", "aten::numel", "aten::ones_like", "aten::pad", "aten::permute", "aten::permute_copy",
    "aten::quantize_per_channel", "aten::quantize_per_tensor", "aten::quantized_gru",
    "aten::quantized_lstm", "aten::rand", "aten::reciprocal", "aten::relu", "aten::relu_",
    "aten::reshape", "aten::resize_", "aten::round", "aten::scaled_dot_product_attention",
    "aten::select", "aten::sigmoid", "aten::size", "aten::slice", "aten::sqrt", "aten::sub", "aten::sub_", "aten::sum",
    "aten::t", "aten::tensor", "aten::to", "aten::transpose", "aten::view", "aten::warn",
    "aten::where", "aten::zeros", "aten::zeros_like",
    # export
    "export::access_subclass_inner_tensor",
    # prim
    "prim::NumToTensor", "prim::RaiseException", "prim::TupleUnpack", "prim::device", "prim::dtype",
    "prim::type",
    # quantized
    "quantized::add", "quantized::add_relu", "quantized::cat", "quantized::conv1d",
    "quantized::conv1d_prepack", "quantized::conv1d_unpack", "quantized::conv2d",
    "quantized::conv2d_prepack", "quantized::conv2d_relu", "quantized::conv2d_unpack",
    "quantized::conv3d", "quantized::conv3d_prepack", "quantized::conv3d_relu",
    "quantized::conv3d_unpack", "quantized::conv_transpose1d",
    "quantized::conv_transpose1d_prepack", "quantized::conv_transpose1d_unpack",
    "quantized::conv_transpose2d", "quantized::conv_transpose2d_prepack",
    "quantized::conv_transpose3d", "quantized::conv_transpose3d_prepack",
    "quantized::embedding_4bit", "quantized::embedding_bag_4bit", "quantized::embedding_bag_byte",
    "quantized::embedding_bag_prepack", "quantized::embedding_bag_unpack",
    "quantized::embedding_byte", "quantized::hardswish", "quantized::linear",
    "quantized::linear_dynamic", "quantized::linear_dynamic_fp16", "quantized::linear_prepack",
    "quantized::linear_prepack_fp16", "quantized::linear_relu", "quantized::linear_relu_dynamic",
    "quantized::linear_relu_dynamic_fp16", "quantized::linear_unpack",
    "quantized::linear_unpack_fp16", "quantized::mul", "quantized::quantized_gru_cell_dynamic",
    "quantized::quantized_lstm_cell_dynamic", "quantized::quantized_rnn_relu_cell_dynamic",
    "quantized::quantized_rnn_tanh_cell_dynamic",
    # quantized_decomposed
    "quantized_decomposed::choose_qparams", "quantized_decomposed::dequantize_per_channel",
    "quantized_decomposed::dequantize_per_tensor",
    "quantized_decomposed::quantize_per_channel", "quantized_decomposed::quantize_per_tensor",
})

#: methods TorchScript code of the catalog calls on its modules and values
METHODS = frozenset({
    "_calculate_qparams", "_check_input_dim", "_conv_forward", "_forward", "_forward_impl",
    "_generate_bundled_inputs_for_forward", "_scale", "_weight_bias", "add", "calculate_qparams",
    "cat", "check_forward_args", "check_forward_hidden", "check_forward_input", "check_hidden_size",
    "check_input", "forward", "forward_impl", "forward_tensor",
    "get_all_bundled_inputs_for_forward", "get_expected_hidden_size", "get_weight", "mul", "pad",
    "permute_hidden", "relu", "reset_min_max_vals", "set_weight_bias", "unpack",
})

#: the builtins serialized TorchScript code calls by bare name
BUILTINS = frozenset({"annotate", "bool", "float", "getattr", "int", "range", "unchecked_cast", "uninitialized"})

#: the torchbind classes TorchScript code may name (quantization's packed parameters)
TORCHBIND = re.compile(r"__torch__\.torch\.classes\.(?:quantized\.(?:Linear|Conv[123]d|Embedding|EmbeddingBag)PackedParamsBase"
                       r"|rnn\.CellParamsBase)$")

#: operators refused by name, with what they do; never to be added to the allowlist
FORBIDDEN = (
    (re.compile(r"(?:save|load|from_file|\w*open\w*|\w*_file\w*|\w*filename\w*|\w*path\w*)$"), "touches files"),
    (re.compile(r"(?:system|popen|\w*spawn\w*|exec\w*|fork\w*)$"), "runs processes"),
    (re.compile(r"(?:Print|print|\w*profiler\w*|\w*record_function\w*|_set_(?!item$)\w+|manual_seed\w*|"
                r"\w*hook\w*|\w*global\w*)$"), "prints or changes the process's global state"),
)


def forbidden(operator: str) -> str | None:
    """What a forbidden operator (or method) does, or None."""
    name = operator.rsplit("::", 1)[-1]
    return next((what for pattern, what in FORBIDDEN if pattern.match(name)), None)


def refusal(operator: str, extra: frozenset = frozenset()) -> str | None:
    """Why ``operator`` (namespace::name) may not run, or None."""
    what = forbidden(operator)
    if what:
        return f"calls {operator}, which {what}"
    if operator in OPERATORS or operator in extra or operator in stacks.operators():
        return None
    return (f"calls {operator}, which is not on the operator allowlist (harness/goldens/operators.py and the stacks'; a project adds "
            "its own models' operators to operators of [tool.bc-harness])")


# -- reading what a golden calls -------------------------------------------------------------------

def export_operator(target: str) -> str:
    """A .pt2 node's target (``torch.ops.aten.add.Tensor``, ``_operator.getitem``) as namespace::name."""
    parts = target.split(".")
    if target.startswith("torch.ops.") and len(parts) >= 4:
        return f"{parts[2]}::{parts[3]}"
    if len(parts) == 2:
        return f"{parts[0]}::{parts[1]}"
    return target


def torchscript_problem(sources: dict[str, str], extra: frozenset = frozenset()) -> str | None:
    """Why TorchScript code (file name -> serialized source) may not run, or None: every operator
    it references, every method it calls, every builtin and torchbind class it names."""
    trees = {}
    for name, source in sources.items():
        try:
            trees[name] = ast.parse(source)
        except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
            return f"{name} is not readable TorchScript code: {type(exc).__name__}"
    walked = {name: _walk(tree) for name, tree in trees.items()}  # once each: a replay vets every file it loads
    defined = {n.name for nodes in walked.values() for n in nodes if isinstance(n, ast.FunctionDef)}
    for name, tree in trees.items():
        problem = _code_problem(tree, walked[name], defined, extra)
        if problem:
            return f"{name} {problem}"
    return None


def _dotted(node) -> list[str] | None:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        return [node.id, *reversed(parts)]
    return None


def _reference_problem(chain: list[str], extra: frozenset) -> str | None:
    """A dotted reference rooted at torch, ops, math or __torch__."""
    root = chain[0]
    if root == "__torch__":
        if chain[1:3] == ["torch", "classes"]:
            qualified = ".".join(chain)
            return None if TORCHBIND.match(qualified) else f"names torchbind class {qualified}, which is not allowed"
        return None  # the archive's own code, checked as well
    if root == "torch" and len(chain) >= 4 and chain[1] == "ops":
        return refusal(f"{chain[2]}::{chain[3]}", extra)
    if root == "torch" and len(chain) == 2:
        return refusal(f"aten::{chain[1]}", extra)
    if root == "ops" and len(chain) == 3:
        return refusal(f"{chain[1]}::{chain[2]}", extra)
    if root == "math" and len(chain) == 2:
        return refusal(f"math::{chain[1]}", extra)
    return f"references {'.'.join(chain)}, which is not an operator the allowlist can name"


_ROOTS = ("torch", "ops", "math", "__torch__")


def _children(node) -> list:
    """ast.iter_child_nodes(node) as a list, in its order, without its generic field iteration
    (vetting walks every node of every TorchScript file a replay loads)."""
    found = []
    for field in node._fields:
        value = getattr(node, field, None)
        if isinstance(value, ast.AST):
            found.append(value)
        elif isinstance(value, list):
            found.extend(v for v in value if isinstance(v, ast.AST))
    return found


def _walk(tree) -> list:
    """Every node of ``tree`` in ast.walk's order (breadth first)."""
    nodes, at = [tree], 0
    while at < len(nodes):
        nodes.extend(_children(nodes[at]))
        at += 1
    return nodes


def _code_problem(tree, nodes: list, defined: set[str], extra: frozenset) -> str | None:
    """Why one file's code (``nodes``: its tree walked) may not run, or None."""
    attributes = [n for n in nodes if isinstance(n, ast.Attribute)]
    inner = {id(n.value) for n in attributes}  # parts of a longer reference
    for node in attributes:
        if id(node) not in inner:
            chain = _dotted(node)
            if chain and chain[0] in _ROOTS:
                problem = _reference_problem(chain, extra)
                if problem:
                    return problem
    scopes = [n for n in nodes if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))]
    for scope in [tree, *scopes]:
        problem = _calls_problem(scope, defined, extra)
        if problem:
            return problem
    return None


def _local_names(scope, own: list) -> set[str]:
    """The names a function binds itself (its parameters, what it assigns; ``own``: the scope's
    own nodes): a bare-name call may call one of them (an alias of a function the archive
    defines), and nothing from elsewhere."""
    names = set()
    if isinstance(scope, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
        arguments = scope.args
        names |= {a.arg for a in [*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs]}
    for node in own:
        targets = node.targets if isinstance(node, ast.Assign) else \
            [node.target] if isinstance(node, (ast.AnnAssign, ast.For, ast.AugAssign)) else []
        names |= {t.id for target in targets for t in ast.walk(target) if isinstance(t, ast.Name)}
    return names


def _own_nodes(scope):
    """The nodes of a scope, not those of the functions it defines."""
    todo = _children(scope)
    while todo:
        node = todo.pop()
        yield node
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)):
            todo.extend(_children(node))


def _calls_problem(scope, defined: set[str], extra: frozenset) -> str | None:
    own = list(_own_nodes(scope))
    local = _local_names(scope, own)
    for node in own:
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if isinstance(func, ast.Name):
            if func.id not in BUILTINS and func.id not in local:
                return f"calls {func.id}, which is not a builtin TorchScript code may call"
            if func.id == "getattr":
                problem = _getattr_problem(node)
                if problem:
                    return problem
        elif isinstance(func, ast.Attribute):
            chain = _dotted(func)
            if chain and chain[0] in _ROOTS:
                continue  # an operator or the archive's own code: checked as a reference
            what = forbidden(func.attr)
            if what:
                return f"calls method {func.attr}, which {what}"
            if func.attr not in METHODS and func.attr not in defined and func.attr not in extra:
                return (f"calls method {func.attr}, which is not on the allowlist of methods (harness/goldens/operators.py) "
                        "nor defined by the archive's code")
        else:
            return "calls something that is neither a name nor a method (a computed call)"
    return None


def _getattr_problem(call) -> str | None:
    """getattr(obj, "name") reaches an attribute of a module or value by a constant name; reaching
    into torch, ops or the archive's namespaces that way would bypass the operator allowlist."""
    if len(call.args) < 2 or not isinstance(call.args[1], ast.Constant) or not isinstance(call.args[1].value, str):
        return "calls getattr with a computed name"
    chain = _dotted(call.args[0])
    if chain is None or chain[0] in _ROOTS:
        return f"reaches for {call.args[1].value} through getattr on {chain[0] if chain else 'an expression'}"
    what = forbidden(call.args[1].value)
    return f"reaches for {call.args[1].value}, which {what}" if what else None
