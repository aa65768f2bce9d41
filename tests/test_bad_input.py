"""Bad input to the `qonnx` command: one line on stderr, exit code 2, nothing written.

DESIGN.md contracts 6 and 7. Every case starts from one small quantized MLP that is known
to lower and run (the sanity tests below), then breaks exactly one thing, so a failure can
only come from that thing:

    x[1,8] -> Quant(2**-4, 8b) -> MatMul(Quant(W1)) -> Add(b1) -> Relu -> Quant(2**-4, 8b unsigned)
           -> MatMul(Quant(W2)) -> Add(b2) -> y[1,4]
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import ModelProto, TensorProto, helper, numpy_helper

from qonnx_ir.cli import main
from qonnx_ir.errors import QonnxError

pytestmark = pytest.mark.filterwarnings("ignore:Some old-style domain attributes")

QONNX_DOMAIN = "qonnx.custom_op.general"
IN_QUANT, ACT_QUANT, W1_QUANT = "/in/Quant", "/relu1/act_quant/Quant", "/fc1/weight_quant/Quant"
FEATURES_IN, FEATURES_OUT = 8, 4


# -- the graph and its mutations --------------------------------------------------------


def mlp(input_shape=(1, FEATURES_IN), output_shape=(1, FEATURES_OUT), quantized: bool = True) -> ModelProto:
    """The unmodified MLP (quantized=False: the same layers as a float graph, no Quant at all)."""
    rng = np.random.default_rng(0)
    initializers, nodes = [], []

    def const(name: str, value) -> str:
        initializers.append(numpy_helper.from_array(np.asarray(value, dtype=np.float32), name))
        return name

    def quant(name: str, x: str, out: str, scale: float, bits: float, signed: int = 1) -> str:
        if not quantized:
            return x
        inputs = [x, const(f"{name}_scale", scale), const(f"{name}_zeropt", 0.0), const(f"{name}_bitwidth", bits)]
        nodes.append(helper.make_node("Quant", inputs, [out], name=name, domain=QONNX_DOMAIN,
                                      signed=signed, narrow=0, rounding_mode="ROUND"))
        return out

    x = quant(IN_QUANT, "x", "x_q", 2.0**-4, 8)
    w1 = quant(W1_QUANT, const("w1", rng.uniform(-1, 1, (FEATURES_IN, 16)).round(3)), "w1_q", 2.0**-6, 8)
    nodes.append(helper.make_node("MatMul", [x, w1], ["h1"], name="/fc1/MatMul"))
    nodes.append(helper.make_node("Add", ["h1", const("b1", rng.uniform(-1, 1, 16).round(3))], ["h1b"], name="/fc1/Add"))
    nodes.append(helper.make_node("Relu", ["h1b"], ["r1"], name="/relu1/Relu"))
    a1 = quant(ACT_QUANT, "r1", "a1", 2.0**-4, 8, signed=0)
    w2 = quant("/fc2/weight_quant/Quant", const("w2", rng.uniform(-1, 1, (16, FEATURES_OUT)).round(3)), "w2_q", 2.0**-6, 8)
    nodes.append(helper.make_node("MatMul", [a1, w2], ["h2"], name="/fc2/MatMul"))
    nodes.append(helper.make_node("Add", ["h2", const("b2", rng.uniform(-1, 1, FEATURES_OUT).round(3))], ["y"], name="/fc2/Add"))
    graph = helper.make_graph(
        nodes, "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(input_shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, list(output_shape))],
        initializers,
    )
    opsets = [helper.make_opsetid("", 13)] + ([helper.make_opsetid(QONNX_DOMAIN, 1)] if quantized else [])
    return helper.make_model(graph, opset_imports=opsets)


def node(model: ModelProto, name: str) -> onnx.NodeProto:
    (found,) = [n for n in model.graph.node if n.name == name]
    return found


def set_initializer(model: ModelProto, name: str, value) -> None:
    (init,) = [i for i in model.graph.initializer if i.name == name]
    init.CopyFrom(numpy_helper.from_array(np.asarray(value, dtype=np.float32), name))


def set_attribute(model: ModelProto, node_name: str, attr: str, value) -> None:
    target = node(model, node_name)
    (old,) = [a for a in target.attribute if a.name == attr]
    target.attribute.remove(old)
    target.attribute.append(helper.make_attribute(attr, value))


def insert_after_relu(op_type: str, name: str, extra_inputs: tuple = ()) -> Callable[[ModelProto], None]:
    """Relu -> <op_type> -> act Quant (the new node's extra inputs are small initializers)."""

    def mutate(model: ModelProto) -> None:
        inputs = ["r1"]
        for index, shape in enumerate(extra_inputs):
            tensor = f"{name}_in{index}"
            model.graph.initializer.append(numpy_helper.from_array(np.ones(shape, np.float32), tensor))
            inputs.append(tensor)
        new = helper.make_node(op_type, inputs, ["r1_extra"], name=name)
        position = list(model.graph.node).index(node(model, "/relu1/Relu")) + 1
        model.graph.node.insert(position, new)
        node(model, ACT_QUANT).input[0] = "r1_extra"

    return mutate


def scale_from_mul_of_input(model: ModelProto) -> None:
    """The input quantizer's scale is Mul(x, c): computed from the data, not a constant."""
    model.graph.initializer.append(numpy_helper.from_array(np.float32(2.0**-4), "c"))
    model.graph.node.insert(0, helper.make_node("Mul", ["x", "c"], ["dynamic_scale"], name="/in/scale/Mul"))
    node(model, IN_QUANT).input[1] = "dynamic_scale"


def parameter_is_graph_input(position: int, parameter: str) -> Callable[[ModelProto], None]:
    """The activation quantizer's scale / bit width is a second graph input."""

    def mutate(model: ModelProto) -> None:
        tensor = node(model, ACT_QUANT).input[position]
        (init,) = [i for i in model.graph.initializer if i.name == tensor]
        model.graph.initializer.remove(init)
        model.graph.input.append(helper.make_tensor_value_info(tensor, TensorProto.FLOAT, []))

    return mutate


def set_parameter(quant: str, parameter: str, value) -> Callable[[ModelProto], None]:
    return lambda model: set_initializer(model, f"{quant}_{parameter}", value)


def rename_node(old: str, new: str) -> Callable[[ModelProto], None]:
    return lambda model: setattr(node(model, old), "name", new)


def rename_tensor(old: str, new: str) -> Callable[[ModelProto], None]:
    def mutate(model: ModelProto) -> None:
        for n in model.graph.node:
            for names in (n.input, n.output):
                for index, name in enumerate(names):
                    if name == old:
                        names[index] = new

    return mutate


def rounding(quant: str, mode: str) -> Callable[[ModelProto], None]:
    return lambda model: set_attribute(model, quant, "rounding_mode", mode)


def broken(mutate: Callable[[ModelProto], None]) -> ModelProto:
    model = mlp()
    mutate(model)
    return model


# -- running the command ---------------------------------------------------------------


def qonnx(argv: list[str], capsys) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_bad_input(code: int, err: str, verb: str, *fragments: str) -> str:
    """Exit 2, exactly one line on stderr (the error), no traceback, every fragment in it."""
    assert code == 2, f"exit code {code}, stderr: {err!r}"
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}: {err!r}"
    (line,) = lines
    assert line.startswith(f"qonnx {verb}: error: "), line
    for fragment in fragments:
        assert fragment in line, f"{fragment!r} not in {line!r}"
    return line


def assert_nothing_written(directory: Path) -> None:
    leftovers = sorted(p.name for p in directory.iterdir())
    assert leftovers == [], f"files left in the output directory: {leftovers}"


@pytest.fixture
def out_dir(tmp_path: Path) -> Path:
    """An existing, empty output directory: temporary files would show up in it."""
    directory = tmp_path / "out"
    directory.mkdir()
    return directory


def save_model(model: ModelProto, path: Path) -> Path:
    onnx.save(model, str(path))
    return path


def transform_fails(model_path: Path, out_dir: Path, capsys, *fragments: str, extra: tuple = ()) -> str:
    output = out_dir / "model.hw.onnx"
    code, _, err = qonnx(["transform", model_path, "-o", output, *extra], capsys)
    line = assert_bad_input(code, err, "transform", *fragments)
    assert not output.exists()
    assert_nothing_written(out_dir)
    return line


@pytest.fixture
def lowered(tmp_path: Path, capsys) -> Path:
    """The unmodified MLP, lowered by `qonnx transform`."""
    source = save_model(mlp(), tmp_path / "mlp.onnx")
    target = tmp_path / "lowered" / "mlp.hw.onnx"
    code, _, err = qonnx(["transform", source, "-o", target], capsys)
    assert code == 0, err
    return target


@pytest.fixture
def x_npy(tmp_path: Path) -> Path:
    path = tmp_path / "x.npy"
    np.save(path, np.random.default_rng(1).uniform(-2, 2, (5, FEATURES_IN)).astype(np.float32))
    return path


# -- sanity: the unmodified graph works, so the error cases are meaningful --------------


def test_unmodified_mlp_transforms_and_runs(tmp_path, capsys, x_npy):
    source = save_model(mlp(), tmp_path / "mlp.onnx")
    target = tmp_path / "out" / "mlp.hw.onnx"
    code, out, err = qonnx(["transform", source, "-o", target], capsys)
    assert code == 0, err
    assert target.is_file() and "wrote" in out
    assert [p.name for p in target.parent.iterdir()] == ["mlp.hw.onnx"]  # no temporary left over

    y_path = tmp_path / "out" / "y.npy"
    code, out, err = qonnx(["run", target, "--input", x_npy, "-o", y_path], capsys)
    assert code == 0, err
    y = np.load(y_path)
    assert y.shape == (5, FEATURES_OUT) and np.all(np.isfinite(y))
    assert sorted(p.name for p in target.parent.iterdir()) == ["mlp.hw.onnx", "y.npy"]

    for model in (source, target):
        code, out, err = qonnx(["info", model], capsys)
        assert code == 0, err
        assert "MatMul" in out or "Dense" in out


def test_dynamic_batch_dimension_is_accepted(tmp_path, capsys):
    source = save_model(mlp(input_shape=("N", FEATURES_IN), output_shape=("N", FEATURES_OUT)), tmp_path / "mlp.onnx")
    code, _, err = qonnx(["transform", source, "-o", tmp_path / "out.onnx"], capsys)
    assert code == 0, err


# -- files that are not ONNX -------------------------------------------------------------

NOT_ONNX = {
    "random-bytes": lambda path: path.write_bytes(np.random.default_rng(7).integers(0, 256, 4096, dtype=np.uint8).tobytes()),
    "text": lambda path: path.write_text("this is not a model\nx = Quant(y)\n"),
    "empty": lambda path: path.write_bytes(b""),
    "missing": lambda path: None,
}
NOT_ONNX_MESSAGE = {"random-bytes": "not an ONNX model", "text": "not an ONNX model",
                    "empty": "not an ONNX model", "missing": "no such file"}


@pytest.mark.parametrize("kind", list(NOT_ONNX))
def test_transform_refuses_a_file_that_is_not_onnx(kind, tmp_path, out_dir, capsys):
    source = tmp_path / "model.onnx"
    NOT_ONNX[kind](source)
    transform_fails(source, out_dir, capsys, NOT_ONNX_MESSAGE[kind], str(source))


@pytest.mark.parametrize("kind", list(NOT_ONNX))
def test_run_refuses_a_file_that_is_not_onnx(kind, tmp_path, out_dir, capsys, x_npy):
    source = tmp_path / "model.hw.onnx"
    NOT_ONNX[kind](source)
    code, _, err = qonnx(["run", source, "--input", x_npy, "-o", out_dir / "y.npy"], capsys)
    assert_bad_input(code, err, "run", NOT_ONNX_MESSAGE[kind], str(source))
    assert_nothing_written(out_dir)


@pytest.mark.parametrize("kind", list(NOT_ONNX))
def test_info_refuses_a_file_that_is_not_onnx(kind, tmp_path, capsys):
    source = tmp_path / "model.onnx"
    NOT_ONNX[kind](source)
    code, _, err = qonnx(["info", source], capsys)
    assert_bad_input(code, err, "info", NOT_ONNX_MESSAGE[kind], str(source))


# -- graphs the lowering cannot handle -------------------------------------------------

# (mutation, fragments the one-line message must contain)
BAD_GRAPHS = {
    "unsupported-Sin": (insert_after_relu("Sin", "/act/Sin"),
                        ["node '/act/Sin'", "op Sin is not supported", "supported: ", "MatMul", "Quant"]),
    "unsupported-Conv": (insert_after_relu("Conv", "/conv1/Conv", ((16, 16, 1),)),
                         ["node '/conv1/Conv'", "Conv could not be lowered", "float ops ('/relu1/Relu')",
                          "no quantizer in between"]),
    "unsupported-LSTM": (insert_after_relu("LSTM", "/lstm/LSTM", ((1, 64, 16), (1, 64, 16))),
                         ["node '/lstm/LSTM'", "op LSTM is not supported", "supported: ", "MatMul"]),
    "scale-from-mul-of-input": (scale_from_mul_of_input, [f"node '{IN_QUANT}'", "'scale' is not a constant"]),
    "scale-is-graph-input": (parameter_is_graph_input(1, "scale"), [f"node '{ACT_QUANT}'", "'scale' is not a constant"]),
    "bitwidth-is-graph-input": (parameter_is_graph_input(3, "bitwidth"), [f"node '{ACT_QUANT}'", "'bitwidth' is not a constant"]),
    "bitwidth-0": (set_parameter(ACT_QUANT, "bitwidth", 0.0), [f"node '{ACT_QUANT}'", "bit width 0 ", "1..32"]),
    "bitwidth-33": (set_parameter(ACT_QUANT, "bitwidth", 33.0), [f"node '{ACT_QUANT}'", "bit width 33 ", "1..32"]),
    "bitwidth-2.5": (set_parameter(ACT_QUANT, "bitwidth", 2.5), [f"node '{ACT_QUANT}'", "bit width 2.5 ", "1..32"]),
    "weight-bitwidth-0": (set_parameter(W1_QUANT, "bitwidth", 0.0), [f"node '{W1_QUANT}'", "bit width 0 ", "1..32"]),
    "bitwidth-nan": (set_parameter(ACT_QUANT, "bitwidth", np.nan), [f"node '{ACT_QUANT}'", "bit width", "1..32"]),
    "bitwidth-inf": (set_parameter(ACT_QUANT, "bitwidth", np.inf), [f"node '{ACT_QUANT}'", "bit width", "1..32"]),
    "bitwidth-negative": (set_parameter(IN_QUANT, "bitwidth", -8.0), [f"node '{IN_QUANT}'", "bit width -8 ", "1..32"]),
    "scale-zero": (set_parameter(ACT_QUANT, "scale", 0.0), [f"node '{ACT_QUANT}'", "scale must be positive"]),
    "zeropt-1": (set_parameter(IN_QUANT, "zeropt", 1.0), [f"node '{IN_QUANT}'", "zero point must be 0"]),
    "zeropt-act-3": (set_parameter(ACT_QUANT, "zeropt", 3.0), [f"node '{ACT_QUANT}'", "zero point must be 0"]),
    # The node must be named as it is in the user's file, not as cleanup renamed it.
    "rounding-CEIL-input": (rounding(IN_QUANT, "CEIL"),
                            [f"node '{IN_QUANT}'", "rounding_mode CEIL is not supported", "supported: ROUND, FLOOR"]),
    "rounding-CEIL-activation": (rounding(ACT_QUANT, "CEIL"),
                                 [f"node '{ACT_QUANT}'", "rounding_mode CEIL is not supported", "supported: ROUND, FLOOR"]),
    "dynamic-feature-dim": (lambda m: None, ["tensor 'x'", "dynamic dimension 1 ('F')", "batch"]),
    "node-name-traversal": (rename_node("/fc1/MatMul", "../../x"), ["'../../x'", "'..'", "rename"]),
    "node-name-semicolon": (rename_node("/fc1/MatMul", "a;b"), ["'a;b'", "';'", "rename"]),
    "tensor-name-semicolon": (rename_tensor("h1", "h1;rm -rf"), ["'h1;rm -rf'", "/fc1/MatMul", "rename"]),
}


def bad_graph(case: str) -> ModelProto:
    if case == "dynamic-feature-dim":
        return mlp(input_shape=("N", "F"))
    return broken(BAD_GRAPHS[case][0])


@pytest.mark.parametrize("case", list(BAD_GRAPHS))
def test_transform_refuses_bad_graph(case, tmp_path, out_dir, capsys):
    source = save_model(bad_graph(case), tmp_path / "model.onnx")
    transform_fails(source, out_dir, capsys, *BAD_GRAPHS[case][1])


def test_transform_refuses_a_float_graph(tmp_path, out_dir, capsys):
    source = save_model(mlp(quantized=False), tmp_path / "float.onnx")
    transform_fails(source, out_dir, capsys, "no quantizer", "float model", "Brevitas")


def test_failed_transform_leaves_an_existing_output_untouched(tmp_path, capsys):
    source = save_model(broken(insert_after_relu("Sin", "/act/Sin")), tmp_path / "model.onnx")
    output = tmp_path / "model.hw.onnx"
    output.write_bytes(b"previous result")
    code, _, err = qonnx(["transform", source, "-o", output], capsys)
    assert_bad_input(code, err, "transform", "Sin")
    assert output.read_bytes() == b"previous result"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.hw.onnx", "model.onnx"]


@pytest.mark.parametrize("case", ["bitwidth-0", "bitwidth-2.5", "bitwidth-nan", "bitwidth-inf"])
def test_info_refuses_a_bit_width_no_dialect_allows(case, tmp_path, capsys):
    """A cost table for a 0-bit or fractional-bit quantizer would be meaningless (BOPs 0)."""
    source = save_model(bad_graph(case), tmp_path / "model.onnx")
    code, out, err = qonnx(["info", source], capsys)
    assert_bad_input(code, err, "info", ACT_QUANT, "bit width")
    assert out == ""


@pytest.mark.parametrize("case", ["node-name-traversal", "node-name-semicolon", "tensor-name-semicolon"])
@pytest.mark.parametrize("verb", ["run", "info"])
def test_untrusted_names_are_refused_by_every_verb(case, verb, tmp_path, out_dir, capsys, x_npy):
    source = save_model(bad_graph(case), tmp_path / "model.onnx")
    extra = ["--input", x_npy, "-o", out_dir / "y.npy"] if verb == "run" else []
    code, _, err = qonnx([verb, source, *extra], capsys)
    assert_bad_input(code, err, verb, *BAD_GRAPHS[case][1])
    assert_nothing_written(out_dir)


# -- `qonnx run` ------------------------------------------------------------------------


def test_run_refuses_a_model_that_is_not_lowered(tmp_path, out_dir, capsys, x_npy):
    source = save_model(mlp(), tmp_path / "mlp.onnx")
    code, _, err = qonnx(["run", source, "--input", x_npy, "-o", out_dir / "y.npy"], capsys)
    assert_bad_input(code, err, "run", "qonnx transform", "Quant")
    assert_nothing_written(out_dir)


def _npy_wrong_features(path: Path) -> None:
    np.save(path, np.zeros((5, FEATURES_IN - 3), np.float32))


def _npy_too_many_features(path: Path) -> None:
    np.save(path, np.zeros((5, FEATURES_IN * 2), np.float32))


def _npy_random_bytes(path: Path) -> None:
    path.write_bytes(np.random.default_rng(3).integers(0, 256, 512, dtype=np.uint8).tobytes())


def _npy_truncated(path: Path) -> None:
    np.save(path, np.zeros((5, FEATURES_IN), np.float32))
    path.write_bytes(path.read_bytes()[:-40])


def _npy_pickled_objects(path: Path) -> None:
    np.save(path, np.array([{"a": 1}, None], dtype=object), allow_pickle=True)


def _npy_strings(path: Path) -> None:
    np.save(path, np.array([["a"] * FEATURES_IN] * 2))


BAD_NPY = {
    "wrong-feature-count": (_npy_wrong_features, ["x.npy", "8"]),
    "too-many-features": (_npy_too_many_features, ["x.npy", "8"]),
    "random-bytes": (_npy_random_bytes, ["x.npy", "not a .npy"]),
    "truncated": (_npy_truncated, ["x.npy"]),
    "pickled-objects": (_npy_pickled_objects, ["x.npy"]),
    "strings": (_npy_strings, ["x.npy"]),
    "missing": (lambda path: None, ["x.npy", "no such file"]),
}


@pytest.mark.parametrize("case", list(BAD_NPY))
def test_run_refuses_a_bad_input_array(case, lowered, tmp_path, out_dir, capsys):
    x_path = tmp_path / "x.npy"
    BAD_NPY[case][0](x_path)
    code, _, err = qonnx(["run", lowered, "--input", x_path, "-o", out_dir / "y.npy"], capsys)
    assert_bad_input(code, err, "run", *BAD_NPY[case][1])
    assert_nothing_written(out_dir)


# -- options ---------------------------------------------------------------------------

BAD_OPTIONS = {
    "passes-nonexistent": (["--passes", "nonexistent"], ["unknown pass 'nonexistent'", "--list"]),
    "pipeline-nonexistent": (["--pipeline", "nonexistent"], ["unknown pipeline 'nonexistent'", "lower"]),
    "input-type-letters": (["--input-type", "fixed<a,b>"], ["fixed<a,b>", "fixed<16,6>"]),
    "input-type-zero-width": (["--input-type", "fixed<0,0>"], ["width"]),
}


@pytest.mark.parametrize("case", list(BAD_OPTIONS))
def test_transform_refuses_bad_options(case, tmp_path, out_dir, capsys):
    source = save_model(mlp(), tmp_path / "mlp.onnx")
    options, fragments = BAD_OPTIONS[case]
    transform_fails(source, out_dir, capsys, *fragments, extra=tuple(options))


# -- --debug and the real command --------------------------------------------------------


def test_debug_raises_with_traceback(tmp_path, out_dir):
    source = save_model(broken(insert_after_relu("Sin", "/act/Sin")), tmp_path / "model.onnx")
    with pytest.raises(QonnxError, match="op Sin is not supported"):
        main(["--debug", "transform", str(source), "-o", str(out_dir / "model.hw.onnx")])
    assert_nothing_written(out_dir)


def test_installed_command_exits_2_without_traceback(tmp_path, out_dir):
    command = Path(sys.executable).parent / "qonnx"
    assert command.is_file(), f"no qonnx script beside {sys.executable}"
    source = save_model(broken(insert_after_relu("Sin", "/act/Sin")), tmp_path / "model.onnx")
    output = out_dir / "model.hw.onnx"
    result = subprocess.run([str(command), "transform", str(source), "-o", str(output)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines() == [result.stderr.strip()], result.stderr
    assert "node '/act/Sin'" in result.stderr and "op Sin is not supported" in result.stderr
    assert result.stdout == ""
    assert not output.exists()
    assert_nothing_written(out_dir)
