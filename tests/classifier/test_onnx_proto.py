"""classifier/onnx_proto.py writes the same bytes as ONNX's own serializer, and the
backbone's graph it builds passes ONNX's checker."""

from __future__ import annotations

import numpy as np
import pytest

from classifier import onnx_proto
from classifier.musicnn_ort import OPSET, embedding_graph
from classifier.musicnn_spec import MSD_MUSICNN, WEIGHTS

onnx = pytest.importorskip("onnx", reason="onnx is a test dependency (pip install -e '.[dev]')")
from onnx import TensorProto, checker, helper, numpy_helper, shape_inference  # noqa: E402


def test_tensors_equal_numpy_helpers():
    for array in (np.arange(24, dtype=np.float32).reshape(2, 3, 4) - 7.5,
                  np.array([1, -3, 1 << 40], np.int64), np.zeros((0,), np.float32),
                  np.array(2.5, np.float32)):
        expected = numpy_helper.from_array(array, "w").SerializeToString()
        assert onnx_proto.tensor("w", array) == expected


def test_tensor_of_an_unknown_type_is_refused():
    with pytest.raises(ValueError, match="no ONNX tensor type"):
        onnx_proto.tensor("w", np.zeros(3, np.float64))


def test_nodes_equal_make_node_with_every_attribute_kind():
    cases = [("Relu", ["x"], ["y"], {}),
             ("Conv", ["x", "w", "b"], ["y"], {"kernel_shape": [7, 38], "pads": [3, 0, 3, 0]}),
             ("ReduceMax", ["y"], ["z"], {"axes": [3], "keepdims": 0}),
             ("Concat", ["a", "b"], ["c"], {"axis": -1}),
             ("LeakyRelu", ["x"], ["y"], {"alpha": 0.25})]
    for op, inputs, outputs, attrs in cases:
        expected = helper.make_node(op, inputs, outputs, **attrs).SerializeToString()
        assert onnx_proto.node(op, inputs, outputs, **attrs) == expected, op


def test_value_info_with_a_symbolic_dimension():
    expected = helper.make_tensor_value_info("patches", TensorProto.FLOAT, ["batch", 187, 96])
    assert onnx_proto.value_info("patches", onnx_proto.FLOAT, ["batch", 187, 96]) == (
        expected.SerializeToString())


def test_a_whole_model_equals_onnx_helpers():
    w = np.ones((2, 3), np.float32)
    ours = onnx_proto.model(onnx_proto.graph(
        [onnx_proto.node("MatMul", ["x", "w"], ["y"])], "g", [onnx_proto.tensor("w", w)],
        [onnx_proto.value_info("x", onnx_proto.FLOAT, ["n", 2])],
        [onnx_proto.value_info("y", onnx_proto.FLOAT, ["n", 3])]), OPSET, 8, "genred")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 3])],
        [numpy_helper.from_array(w, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="genred")
    model.ir_version = 8
    assert ours == model.SerializeToString()


def test_the_backbone_graph_is_valid_onnx_and_serializes_canonically():
    from safetensors.numpy import load_file

    data = embedding_graph(load_file(str(WEIGHTS[MSD_MUSICNN])))
    model = onnx.load_from_string(data)
    checker.check_model(model, full_check=True)
    assert model.SerializeToString() == data  # nothing lost or reordered in a round trip
    inferred = shape_inference.infer_shapes(model, strict_mode=True)
    out = inferred.graph.output[0].type.tensor_type.shape.dim
    assert [d.dim_param or d.dim_value for d in out] == ["batch", 753]
    assert model.opset_import[0].version == OPSET and model.ir_version == 8
