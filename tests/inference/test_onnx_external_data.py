"""Issue 9 §6: a bundle's ONNX graph may not reference external data. onnxruntime resolves such
a tensor's location against the working directory when the model comes as bytes, so a bundle
could make the service read files it ships with (or that an attacker can place). Refused before
any session exists, without the `onnx` package (not in the image)."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
import synthetic
from onnx import TensorProto, helper, numpy_helper
from serving_helpers import local_config

from inference import loader, predictor
from inference.bundle import BundleError
from inference.predictor import Predictor

WEIGHTS = np.array([[10.0, 20.0, 30.0, 40.0]], dtype=np.float32)


def external(name: str, location: str) -> TensorProto:
    """A tensor whose values live in ``location``, as `onnx.save(save_as_external_data=True)`
    writes them."""
    tensor = numpy_helper.from_array(WEIGHTS, name)
    tensor.ClearField("raw_data")
    tensor.data_location = TensorProto.EXTERNAL
    for key, value in {"location": location, "offset": "0", "length": str(WEIGHTS.nbytes)}.items():
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value
    return tensor


def model_bytes(graph: Any) -> bytes:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    return model.SerializeToString()


def io() -> tuple[list[Any], list[Any]]:
    return (
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, [None, 4])],
        [helper.make_tensor_value_info("margin", TensorProto.FLOAT, [None, 4])],
    )


def with_initializer(location: str) -> bytes:
    add = helper.make_node("Add", ["features", "w"], ["margin"])
    return model_bytes(helper.make_graph([add], "g", *io(), initializer=[external("w", location)]))


def with_constant_in_a_subgraph(location: str) -> bytes:
    # If(cond) { Constant(external) + features } else { features }: the reference sits two
    # levels down, in a node attribute of a subgraph.
    inputs, outputs = io()
    out = [helper.make_tensor_value_info("branch", TensorProto.FLOAT, [None, 4])]
    constant = helper.make_node("Constant", [], ["c"], value=external("c_value", location))
    then = helper.make_graph(
        [constant, helper.make_node("Add", ["features", "c"], ["branch"])], "then", [], out
    )
    other = helper.make_graph(
        [helper.make_node("Identity", ["features"], ["branch"])], "else", [], out
    )
    nodes = [
        helper.make_node("ReduceMax", ["features"], ["top"], keepdims=0),
        helper.make_node("Constant", [], ["zero"], value=numpy_helper.from_array(np.float32(0))),
        helper.make_node("Greater", ["top", "zero"], ["cond"]),
        helper.make_node("If", ["cond"], ["margin"], then_branch=then, else_branch=other),
    ]
    return model_bytes(helper.make_graph(nodes, "g", inputs, outputs))


def with_constant_in_a_function(location: str) -> bytes:
    # A model-local function whose body holds the reference.
    constant = helper.make_node("Constant", [], ["c"], value=external("f_value", location))
    body = [constant, helper.make_node("Add", ["x", "c"], ["y"])]
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("local", 1)]
    function = helper.make_function("local", "AddWeights", ["x"], ["y"], body, opsets[:1])
    call = helper.make_node("AddWeights", ["features"], ["margin"], domain="local")
    model = helper.make_model(
        helper.make_graph([call], "g", *io()), opset_imports=opsets, functions=[function]
    )
    model.ir_version = 9
    return model.SerializeToString()


def with_sparse_initializer(location: str) -> bytes:
    values = external("s_values", location)
    values.dims[:] = [4]
    indices = numpy_helper.from_array(np.array([0, 1, 2, 3], dtype=np.int64), "s_indices")
    sparse = helper.make_sparse_tensor(values, indices, [1, 4])
    add = helper.make_node("Add", ["features", "s_values"], ["margin"])
    graph = helper.make_graph([add], "g", *io(), sparse_initializer=[sparse])
    return model_bytes(graph)


def bundle_with(onnx: bytes) -> dict[str, Any]:
    bundle = synthetic.wqi_bundle()
    bundle["predictor"] = {**bundle["predictor"], "onnx": onnx, "outputs": ["margin"]}
    return bundle


@pytest.fixture
def sessions(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every InferenceSession the predictor tries to create (the only reader of referenced
    files)."""
    created: list[Any] = []
    real = ort.InferenceSession

    def spy(*args: Any, **kwargs: Any) -> Any:
        created.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(predictor.ort, "InferenceSession", spy)
    return created


@pytest.fixture
def weights_here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A file the graph can name, in the working directory onnxruntime resolves it against."""
    (tmp_path / "weights.bin").write_bytes(WEIGHTS.tobytes())
    monkeypatch.chdir(tmp_path)
    return "weights.bin"


@pytest.mark.parametrize(
    ("build", "tensor"),
    [
        (with_initializer, "w"),
        (with_constant_in_a_subgraph, "c_value"),
        (with_sparse_initializer, "s_values"),
        (with_constant_in_a_function, "f_value"),
    ],
)
def test_external_data_is_refused_before_any_session(
    build: Any, tensor: str, weights_here: str, sessions: list[Any]
) -> None:
    bundle = bundle_with(build(weights_here))
    sessions.clear()  # building it ran the synthetic bundle's golden samples
    with pytest.raises(BundleError, match="external data") as caught:
        Predictor(bundle)
    assert f"{tensor!r}" in str(caught.value) and weights_here in str(caught.value)
    assert sessions == []  # refused from the bytes alone: nothing opened the file


@pytest.mark.parametrize("build", [with_constant_in_a_subgraph, with_sparse_initializer])
def test_without_the_refusal_onnxruntime_reads_the_file(
    build: Any, weights_here: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Why it matters: with this service's own session options, onnxruntime opens ./weights.bin
    # and serves its values.
    monkeypatch.setattr(predictor, "refuse_external_data", lambda onnx: None)
    served = Predictor(bundle_with(build(weights_here)))
    margin = served.raw(np.ones((1, 4), dtype=np.float32))["margin"]
    assert margin.tolist() == (WEIGHTS + 1).reshape(-1).tolist()


def test_the_loader_refuses_such_a_bundle_before_serving(
    weights_here: str, cache_dir: Path, sessions: list[Any]
) -> None:
    data = synthetic.dumps(bundle_with(with_initializer(weights_here)))
    sessions.clear()
    with pytest.raises(BundleError, match="external data"):
        loader.load(local_config(data, cache_dir))
    assert sessions == []


def test_inline_graphs_still_load(sessions: list[Any]) -> None:
    bundles = [synthetic.wqi_bundle(), synthetic.potability_bundle()]
    sessions.clear()  # building them ran their golden samples
    for bundle in bundles:
        Predictor(bundle)
    assert len(sessions) == 2


@pytest.mark.parametrize(
    "onnx",
    [b"\x0a", b"\x3a\xff\xff\xff\xff\x0f", b"\x3a\x05\x0a\x03abc\x00", b"\x0b", b"\xff" * 11],
)
def test_malformed_graph_bytes_are_a_bundle_error(onnx: bytes, sessions: list[Any]) -> None:
    with pytest.raises(BundleError, match="ONNX"):
        Predictor(bundle_with(onnx))


def test_damaged_graphs_are_refused_or_pass_never_crash() -> None:
    # Truncations and byte flips of a real graph: the scan answers (None or BundleError) and
    # never raises anything else (an IndexError would be a fault at init, not a refusal).
    rng = random.Random(9)
    graphs = [synthetic.wqi_bundle()["predictor"]["onnx"], with_constant_in_a_subgraph("w.bin")]
    for _ in range(400):
        data = bytearray(rng.choice(graphs))
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        data = data[: rng.randint(1, len(data))]
        try:
            predictor.refuse_external_data(bytes(data))
        except BundleError as exc:
            assert "ONNX graph" in str(exc)


def test_graphs_nested_too_deep_are_refused_not_a_recursion_error() -> None:
    def field(number: int, payload: bytes) -> bytes:
        assert len(payload) < 1 << 14
        size = (
            bytes([len(payload)])
            if len(payload) < 128
            else bytes([len(payload) & 0x7F | 0x80, len(payload) >> 7])
        )
        return bytes([number << 3 | 2]) + size + payload

    graph = b""
    for _ in range(40):  # graph -> node -> attribute -> graph ...: 120 levels
        graph = field(1, field(5, field(6, graph)))
    with pytest.raises(BundleError, match="nested deeper"):
        predictor.refuse_external_data(field(7, graph))
