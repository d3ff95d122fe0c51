"""Runs a bundle's ONNX graph with onnxruntime and interprets its outputs as answers."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from typing import Any, NamedTuple

import numpy as np
import onnxruntime as ort

from inference.blocks import Blocks, joined
from inference.bundle import BundleError
from inference.domain import Domain
from inference.outputs import Answered, Devices, Output, Tally, make_output

ENGINE = "onnxruntime"

# ---- external data ------------------------------------------------------------------------
# onnxruntime resolves a tensor's external data location against the working directory when a
# model comes as bytes, and reads that file (a Constant in a subgraph or a sparse initializer
# even with the session options below). A bundle carries its weights inline, so any tensor
# with external data is refused from the bytes, before a session exists. There is no session
# option to forbid it, and the `onnx` package is not in the image (importing `protobuf` would
# cost ~90 ms of cold start): this walks the protobuf wire format over the messages that can
# hold a TensorProto (field numbers from onnx-ml.proto).
_MODEL, _TRAINING, _FUNCTION, _GRAPH, _NODE, _ATTRIBUTE, _SPARSE, _TENSOR = range(8)
_CHILDREN: dict[int, dict[int, int]] = {
    _MODEL: {7: _GRAPH, 20: _TRAINING, 25: _FUNCTION},  # graph, training_info, functions
    _TRAINING: {1: _GRAPH, 2: _GRAPH},  # initialization, algorithm
    _FUNCTION: {7: _NODE, 11: _ATTRIBUTE},  # node, attribute_proto
    _GRAPH: {1: _NODE, 5: _TENSOR, 15: _SPARSE},  # node, initializer, sparse_initializer
    _NODE: {5: _ATTRIBUTE},  # attribute
    # t, g, tensors, graphs, sparse_tensor, sparse_tensors
    _ATTRIBUTE: {5: _TENSOR, 6: _GRAPH, 10: _TENSOR, 11: _GRAPH, 22: _SPARSE, 23: _SPARSE},
    _SPARSE: {1: _TENSOR, 2: _TENSOR},  # values, indices
}
_TENSOR_NAME, _EXTERNAL_DATA, _DATA_LOCATION, _EXTERNAL = 8, 13, 14, 1
_MAX_DEPTH = 64  # nesting of subgraphs; protobuf's own parsers stop at 100
_SCALARS = {0: rb"[\x80-\xff]{0,9}[\x00-\x7f]", 1: rb"[\x00-\xff]{8}", 5: rb"[\x00-\xff]{4}"}
_RUNS: dict[bytes, re.Pattern[bytes]] = {}

Span = tuple[int, int]


class _Malformed(Exception):
    pass


def _varint(data: bytes, pos: int, end: int) -> tuple[int, int]:
    value = shift = 0
    while pos < end and shift < 64:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7
    raise _Malformed("a truncated or overlong varint")


def _skip_run(data: bytes, start: int, key_end: int, end: int, wire: int) -> int:
    """Past a run of one scalar field's entries, at C speed: proto2 does not pack repeated
    scalars, and a trained tree ensemble's attributes hold ~180,000 of them."""
    tag = data[start:key_end]
    pattern = _RUNS.get(tag + bytes([wire]))
    if pattern is None:
        pattern = re.compile(b"(?:" + re.escape(tag) + _SCALARS[wire] + b")+")
        _RUNS[tag + bytes([wire])] = pattern
    matched = pattern.match(data, start, end)
    if matched is None:
        raise _Malformed("a truncated field")
    return matched.end()


def _skip_bytes_run(data: bytes, start: int, key_end: int, end: int) -> int:
    """Past a run of one length-delimited field's entries (a tree ensemble's ~18,000
    `nodes_modes` strings), one-byte tags and lengths read inline."""
    if key_end - start != 1:  # a field number above 15: rare, one entry at a time
        size, pos = _varint(data, key_end, end)
        if pos + size > end:
            raise _Malformed("a truncated field")
        return pos + size
    tag, pos = data[start], key_end
    while True:
        size = data[pos] if pos < end else 0x80
        if size < 0x80:
            pos += 1 + size
        else:
            size, pos = _varint(data, pos, end)
            pos += size
        if pos >= end or data[pos] != tag:
            break
        pos += 1
    if pos > end:
        raise _Malformed("a truncated field")
    return pos


def _fields(data: bytes, pos: int, end: int) -> Iterator[tuple[int, int, int | Span]]:
    """Every (field number, wire type, value) of one message: a varint's value, else the
    span of its bytes."""
    while pos < end:
        key, pos = _varint(data, pos, end)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise _Malformed("field number 0")
        if wire == 0:
            value, pos = _varint(data, pos, end)
            yield number, wire, value
            continue
        if wire == 2:
            size, pos = _varint(data, pos, end)
        elif wire in (1, 5):
            size = 8 if wire == 1 else 4
        else:  # groups (3, 4) do not occur in ONNX; 6 and 7 are not wire types
            raise _Malformed(f"wire type {wire}")
        if pos + size > end:
            raise _Malformed("a truncated field")
        yield number, wire, (pos, pos + size)
        pos += size


def _external_tensor(data: bytes, pos: int, end: int, kind: int, depth: int) -> Span | None:
    """The span of the first TensorProto with external data in this message, if any."""
    if depth > _MAX_DEPTH:
        raise _Malformed(f"nested deeper than {_MAX_DEPTH} levels")
    if kind == _TENSOR:
        return (pos, end) if _is_external(data, pos, end) else None
    children = _CHILDREN[kind]
    while pos < end:
        start = pos
        key, pos = _varint(data, pos, end)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise _Malformed("field number 0")
        if wire == 2 and number not in children:
            pos = _skip_bytes_run(data, start, pos, end)
        elif wire == 2:
            size, pos = _varint(data, pos, end)
            if pos + size > end:
                raise _Malformed("a truncated field")
            found = _external_tensor(data, pos, pos + size, children[number], depth + 1)
            if found:
                return found
            pos += size
        elif wire in _SCALARS:
            pos = _skip_run(data, start, pos, end, wire)
        else:
            raise _Malformed(f"wire type {wire}")
    return None


def _is_external(data: bytes, pos: int, end: int) -> bool:
    for number, wire, value in _fields(data, pos, end):
        if number == _DATA_LOCATION and wire == 0 and value == _EXTERNAL:
            return True
        if number == _EXTERNAL_DATA and wire == 2:
            return True  # an entry alone is a reference, whatever data_location says
    return False


def _describe(data: bytes, tensor: Span) -> tuple[str, str]:
    """(name, location) of a tensor with external data, for the refusal."""
    name = location = ""
    for number, _, value in _fields(data, *tensor):
        if isinstance(value, int):
            continue
        text = data[value[0] : value[1]]
        if number == _TENSOR_NAME:
            name = text.decode(errors="replace")
        elif number == _EXTERNAL_DATA:
            entry = {n: v for n, _, v in _fields(data, *value) if not isinstance(v, int)}
            key, found = entry.get(1, (0, 0)), entry.get(2, (0, 0))
            if data[key[0] : key[1]] == b"location":
                location = data[found[0] : found[1]].decode(errors="replace")
    return name, location


def refuse_external_data(onnx: bytes) -> None:
    """Check that every tensor's data lives inside the graph's bytes (a graph that reads a
    file could read any file of the function).

    Raises:
        BundleError: naming the first tensor with external data, or a graph that is not valid.
    """
    data = bytes(onnx)
    try:
        found = _external_tensor(data, 0, len(data), _MODEL, 0)
        if found is None:
            return
        name, location = _describe(data, found)
    except _Malformed as exc:
        raise BundleError(f"the bundle's ONNX graph is not a valid model: {exc}") from None
    raise BundleError(
        f"the bundle's ONNX graph refers to external data (tensor {name!r} in"
        f" {location or 'an unnamed location'!r}); a bundle must carry its weights inline"
    )


def _session(onnx: bytes) -> ort.InferenceSession:
    refuse_external_data(onnx)
    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only: warnings would go to stderr per session
    # One thread per run, no intra-op pool: large batches are split by rows across threads
    # instead (inference/blocks.py).
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        return ort.InferenceSession(onnx, options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own untyped errors
        raise BundleError(f"the bundle's ONNX graph does not load: {exc}") from exc


class _Bound(NamedTuple):
    """One row's run on fixed buffers: the input copied in, the outputs written in place."""

    binding: Any  # onnxruntime's C++ IOBinding
    features: np.ndarray  # (1, width) float32
    outputs: list[np.ndarray]  # (1, k) float32 each, in the bundle's output order


class Predictor:
    """The served model: raw ONNX outputs, and answers built from them by the bundle's output."""

    def __init__(self, bundle: dict[str, Any]) -> None:
        spec = bundle["predictor"]
        if spec.get("engine") != ENGINE:
            raise BundleError(f"predictor engine {spec.get('engine')!r} is not {ENGINE!r}")
        self._session = _session(spec["onnx"])
        # The compiled session's own runs: the Python wrapper's per-call checks (graph capture,
        # input names, OrtValue ownership) cost ~3 µs of a ~35 µs request, and this code
        # always feeds the one named input with a numpy array. Same signature and errors.
        compiled = self._session._sess
        self._run_session, self._run_bound = compiled.run, compiled.run_with_iobinding
        self._input: str = spec["input"]
        self._outputs: list[str] = list(spec["outputs"])
        # A single reading runs on buffers bound to the session once per thread (see _run_one).
        self._bound = threading.local()
        self._run_options = ort.RunOptions()
        # The applicability domain and the prior that is an out-of-domain reading's confidence
        # come from the training profile; without one, answers carry "domain": null.
        self.domain = Domain.of_bundle(bundle)
        prior = None
        if self.domain is not None:
            prior = (bundle["profile"].get("outputs") or {}).get("label_shares")
        self.output: Output = make_output(bundle["output"], prior)
        # Large batches run as row blocks on threads of their own, each through this same
        # single-threaded session (a session may be run concurrently). Against one session with
        # an intra-op pool that is faster (no pool wake-ups between the graph's two tree nodes:
        # 13 ms for 10,000 rows, not 15-17) and exact: the pool splits the trees and adds the
        # partial sums in another order, so a reading in a batch could be answered a float32
        # ulp away from the same reading alone.
        self.blocks = Blocks()

    def raw(self, features: np.ndarray) -> dict[str, np.ndarray]:
        """Raw graph outputs (margins, predicted errors) for a float32 matrix, the caller's
        own (never a thread's bound buffers)."""
        parts = self.blocks.map(len(features), lambda lo, hi: features[lo:hi], self._run_many)
        results = (
            parts[0] if len(parts) == 1 else [np.concatenate(p) for p in zip(*parts, strict=True)]
        )
        return self._named(results)

    def answers(self, features: np.ndarray, devices: Devices = None) -> list[dict[str, Any]]:
        """Answers with their domain verdicts, each block's built on the thread that predicted
        it."""
        return self.answered(features, devices).answers

    def answered(self, features: np.ndarray, devices: Devices = None) -> Answered:
        """Answers and their tally (for the invocation's metrics)."""
        if not self.blocks.splits(len(features)):  # a single row: the request hot path
            return self.answered_here(features, devices)

        def prepare(lo: int, hi: int) -> tuple[np.ndarray, Devices]:
            return features[lo:hi], None if devices is None else devices[lo:hi]

        parts = self.blocks.map(len(features), prepare, lambda block: self.answered_here(*block))
        return joined_answers(parts)

    def answers_here(self, features: np.ndarray, devices: Devices = None) -> list[dict[str, Any]]:
        """Answers computed on the calling thread alone."""
        return self.answered_here(features, devices).answers

    def answered_here(self, features: np.ndarray, devices: Devices = None) -> Answered:
        # The outputs are read into the answers before this returns: a single reading's run
        # gives the thread's bound buffers, which its next reading overwrites.
        raw = self._named(self._run(features))
        checked = None if self.domain is None else self.domain.check(features)
        return self.output.answered(raw, devices, checked)

    def _named(self, results: list[np.ndarray]) -> dict[str, np.ndarray]:
        return {name: r.reshape(-1) for name, r in zip(self._outputs, results, strict=True)}

    def _run(self, features: np.ndarray) -> list[np.ndarray]:
        """The graph's outputs for a float32 matrix; for one row, in this thread's bound
        buffers, valid until its next single-row run."""
        return self._run_one(features) if len(features) == 1 else self._run_many(features)

    def _run_many(self, features: np.ndarray) -> list[np.ndarray]:
        return self._run_session(self._outputs, {self._input: features}, None)  # type: ignore[no-any-return]

    def _run_one(self, features: np.ndarray) -> list[np.ndarray]:
        """One row's outputs, in this thread's bound buffers.

        A plain run wraps the input in a new OrtValue and allocates every output: ~2.5 of
        its ~8 µs for one row. The same session on buffers bound once gives the same values
        (a test compares them); a graph whose outputs are not one float32 column each runs
        plainly."""
        try:
            bound = self._bound.one
        except AttributeError:  # this thread's first single row
            bound = self._bound.one = self._bind()
        if bound is None:
            return self._run_many(features)
        np.copyto(bound.features, features)
        self._run_bound(bound.binding, self._run_options)
        return bound.outputs

    def _bind(self) -> _Bound | None:
        """This thread's binding for one row, or None unless every output is one float32
        column and the input's width is fixed."""
        declared = {o.name: o for o in self._session.get_outputs()}
        width = self._session.get_inputs()[0].shape[-1]
        if not isinstance(width, int) or any(
            declared[name].type != "tensor(float)" or list(declared[name].shape[1:]) != [1]
            for name in self._outputs
        ):
            return None
        features = np.zeros((1, width), dtype=np.float32)
        outputs = [np.zeros((1, 1), dtype=np.float32) for _ in self._outputs]
        binding = self._session.io_binding()
        binding.bind_cpu_input(self._input, features)
        for name, out in zip(self._outputs, outputs, strict=True):
            binding.bind_output(name, "cpu", 0, np.float32, out.shape, out.ctypes.data)
        return _Bound(binding._iobinding, features, outputs)


def joined_answers(parts: list[Answered]) -> Answered:
    """Blocks' answers in row order, and their tallies summed."""
    return Answered(joined([p.answers for p in parts]), Tally.total([p.tally for p in parts]))
