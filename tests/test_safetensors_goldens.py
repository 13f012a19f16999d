"""The safetensors kind: torchao's flattened checkpoints, vetted from their header before the
safetensors package or torchao reads them."""

from __future__ import annotations

import json
import struct

import pytest
import torch

from harness.goldens.pickles import Refused, Untrusted
from harness.goldens.safetensors_file import MAX_HEADER_BYTES, vet_safetensors
from harness.goldens.vetting import vet

pytest.importorskip("safetensors")


def _file(table: dict, data: bytes = b"", raw_header: bytes | None = None) -> bytes:
    head = raw_header if raw_header is not None else json.dumps(table).encode()
    return struct.pack("<Q", len(head)) + head + data


def _one(dtype="F32", shape=(2,), offsets=(0, 8), metadata=None, data=bytes(8)) -> bytes:
    table = {"w": {"dtype": dtype, "shape": list(shape), "data_offsets": list(offsets)}}
    if metadata is not None:
        table["__metadata__"] = metadata
    return _file(table, data)


def test_a_well_formed_file_is_its_tensors_bytes():
    assert vet_safetensors(_one(), "x", False, frozenset()) == 8


@pytest.mark.parametrize("data, says", [
    (b"\x01\x00", "too short"),
    (struct.pack("<Q", MAX_HEADER_BYTES + 1) + b"{}", "its header claims"),
    (struct.pack("<Q", 100) + b"{}", "its header claims"),
    (_file({}, raw_header=b"[1, 2]"), "not a JSON object"),
    (_file({}, raw_header=b'{"w": {"dtype": "F32", "shape": [0], "data_offsets": [0, 0]}, '
                          b'"w": {"dtype": "F32", "shape": [0], "data_offsets": [0, 0]}}'), "appears twice"),
    (_one(dtype="F128"), "no known dtype"),
    (_one(shape=(-1,)), "malformed shape"),
    (_one(offsets=(4, 12), data=bytes(12)), "do not follow"),
    (_one(shape=(3,)), "do not match its shape"),
    (_one(data=bytes(16)), "cover 8 bytes of the 16"),
    (_one(metadata={"a": 1}), "not a table of strings"),
    (_one(metadata={"a": '{"_type": "Tensor", "_type": "os.system"}'}), "metadata 'a'.*appears twice"),
])
def test_a_malformed_file_is_refused_before_anything_reads_it(data, says):
    with pytest.raises(Refused, match=says):
        vet("safetensors", data, "x")


def test_a_type_off_the_allowlist_is_untrusted_and_trust_waives_only_that():
    named = _one(metadata={"w": json.dumps({"_type": "Int8Tensor", "_data": {"k": {"_type": "os.system"}}})})
    with pytest.raises(Untrusted, match="names the type 'os.system'"):
        vet("safetensors", named, "x")
    vet("safetensors", named, "x", trusted=True)
    with pytest.raises(Refused, match="do not match its shape"):
        vet("safetensors", _one(shape=(5,)), "x", trusted=True)
    # the torchao stack's own types pass
    vet("safetensors", _one(metadata={"w": json.dumps({"_type": "IntxUnpackedToInt8Tensor", "_data": {
        "dtype": {"_type": "torch.dtype", "_data": "float32"}}})}), "x")


def test_torchaos_checkpoint_round_trips_through_safetensors(catalog):
    """A torchao checkpoint saved the way torchao's users save safetensors loads back into the float
    model and computes what the model it came from computes."""
    pytest.importorskip("torchao")
    from harness.making import flows
    from harness.making.artifacts import KINDS
    from harness.stacks.torchao.compat import safetensors_problem

    if safetensors_problem():
        pytest.skip(safetensors_problem())
    case = next(c for c in catalog if c.id == "torchao-lm-emb-int4-8da4w")
    example = flows.make_input(case)
    data = KINDS["safetensors"].save(case, flows.build(case), example)
    vet("safetensors", data, "made")
    reloaded = KINDS["safetensors"].load(case, data, example)
    expected = flows.runnable(case, flows.build(case), example)
    assert torch.equal(case.forward(reloaded, example), case.forward(expected, example))


def test_a_flow_without_safetensors_says_so(catalog):
    from harness.making.flows import artifact_problem

    case = next(c for c in catalog if c.id == "linear")
    assert "keeps no safetensors file" in artifact_problem(case, "safetensors")


def test_metadata_is_read_as_the_library_reads_it():
    """A JSON value with white space before it is JSON to torchao's json.loads: vetted like any other;
    a plain string (even an empty one) names no type; a header of many keys is checked in linear time."""
    hidden = _one(metadata={"w": " " + json.dumps({"_type": "MXTensor"})})
    with pytest.raises(Untrusted, match="'MXTensor'"):
        vet("safetensors", hidden, "x")
    vet("safetensors", _one(metadata={"note": "", "other": "plain text"}), "x")
    with pytest.raises(Refused, match="dtype"):
        vet("safetensors", _file({"w": {"dtype": [], "shape": [0], "data_offsets": [0, 0]}}), "x")
    many = {f"k{i}": {"dtype": "F32", "shape": [0], "data_offsets": [0, 0]} for i in range(15000)}
    body = json.dumps(many)[:-1] + ', "k7": {"dtype": "F32", "shape": [0], "data_offsets": [0, 0]}}'
    with pytest.raises(Refused, match="'k7' appears twice"):
        vet("safetensors", _file({}, raw_header=body.encode()), "x")


def test_a_side_tensor_larger_than_its_weight_is_refused_before_it_runs():
    """A scale or pre-scale broadcasts at run time: a few bytes could stand for gigabytes."""
    pytest.importorskip("torchao")
    from harness.stacks.torchao import compat

    model = compat.quantize(torch.nn.Sequential(torch.nn.Linear(64, 32)).eval(), "int8-dynamic")
    state = model.state_dict()
    compat.check_proportions(state)  # what torchao writes passes
    state["0.weight"].act_pre_scale = torch.ones(4096, 1, 1)
    with pytest.raises(compat.Oversized, match=r"0.weight.act_pre_scale has shape \(4096, 1, 1\)"):
        compat.check_proportions(state)


def test_a_reference_distance_of_another_shape_is_shown_not_raised():
    from harness.replaying.results import Result, _cell

    r = Result("c", "safetensors", "any", "2.13.0", "2.13.0", "drift", "output: shape changed",
               vs_reference_mismatched=1)
    assert "ref≠ (another shape)" in _cell(r)
