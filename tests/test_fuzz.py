"""Fuzz suite: the shared models, mutated across every family of bad input a user can hand us.

Each case breaks one thing in the jet tagger or the MNIST TFC model (the file, its numbers,
its structure, its names), in a lowered model, in the outputs asked for, in a command-line
option or in a `.npy` input, runs the real `qonnx` verb, and asserts one of two outcomes:

- refused: exit code 2, exactly one line on stderr naming what is wrong (and the node, as the
  user's file names it), no traceback, and nothing written anywhere;
- accepted: exit code 0, and the numbers equal qonnx's executor on the mutated file in
  float64 (the jet tagger's power-of-two graph is exact; its softmax is dropped for that).

Not one case may exit 0 with numbers that differ from the reference.
"""

from __future__ import annotations

import copy
import json
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from paths import JET_TAGGER, MNIST_TFC
from qonnx_ir import execute, load
from qonnx_ir.cli import main
from qonnx_ir.reference import execute_qonnx

pytestmark = pytest.mark.filterwarnings("ignore:Some old-style domain attributes")

JET = onnx.load(str(JET_TAGGER))
TFC = onnx.load(str(MNIST_TFC))


# -- mutations of a QONNX model ----------------------------------------------------------------


def _node(model, name):
    (found,) = [n for n in model.graph.node if n.name == name]
    return found


def _init(model, name):
    (found,) = [i for i in model.graph.initializer if i.name == name]
    return found


def set_init(name, value, dtype=np.float32):
    def mutate(model):
        _init(model, name).CopyFrom(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
    return mutate


def quant_input(quant: str, position: int, value):
    """Set input `position` of a Quant node (1 scale, 2 zero point, 3 bit width) to a new constant."""
    def mutate(model):
        name = _node(model, quant).input[position]
        _init(model, name).CopyFrom(numpy_helper.from_array(np.asarray(value, dtype=np.float32), name))
    return mutate


def scale_of(quant, value):
    return quant_input(quant, 1, value)


def zeropt_of(quant, value):
    return quant_input(quant, 2, value)


def bits_of(quant, value):
    return quant_input(quant, 3, value)


def weights_of(quant, transform: Callable[[np.ndarray], np.ndarray]):
    def mutate(model):
        name = _node(model, quant).input[0]
        old = numpy_helper.to_array(_init(model, name))
        _init(model, name).CopyFrom(numpy_helper.from_array(transform(old.copy()).astype(np.float32), name))
    return mutate


def set_attr(node, attribute, value):
    def mutate(model):
        target = _node(model, node)
        for entry in list(target.attribute):
            if entry.name == attribute:
                target.attribute.remove(entry)
        target.attribute.append(helper.make_attribute(attribute, value))
    return mutate


def rename_node(old, new):
    return lambda model: setattr(_node(model, old), "name", new)


def rename_tensor(old, new):
    def mutate(model):
        for n in model.graph.node:
            for names in (n.input, n.output):
                for i, name in enumerate(names):
                    if name == old:
                        names[i] = new
    return mutate


def add_node(op, inputs, outputs, name, domain="", position=None, **attrs):
    def mutate(model):
        node = helper.make_node(op, inputs, outputs, name=name, domain=domain, **attrs)
        if position is None:
            model.graph.node.append(node)
        else:
            model.graph.node.insert(position, node)
    return mutate


def chain(*mutations):
    def mutate(model):
        for m in mutations:
            m(model)
    return mutate


def insert_after(tensor_producer: str, op: str, name: str, extra_inputs=(), **attrs):
    """<producer> -> op -> its consumers (the op reads the producer's output first)."""
    def mutate(model):
        producer = _node(model, tensor_producer)
        old = producer.output[0]
        new = f"{name}_out"
        for node in model.graph.node:
            for i, value in enumerate(node.input):
                if value == old:
                    node.input[i] = new
        for index, shape in enumerate(extra_inputs):
            tensor = f"{name}_in{index}"
            model.graph.initializer.append(numpy_helper.from_array(np.ones(shape, np.float32), tensor))
        node = helper.make_node(op, [old, *[f"{name}_in{i}" for i in range(len(extra_inputs))]], [new], name=name, **attrs)
        model.graph.node.insert(list(model.graph.node).index(producer) + 1, node)
    return mutate


def raw_data_too_short(name):
    def mutate(model):
        init = _init(model, name)
        array = numpy_helper.to_array(init)
        init.CopyFrom(numpy_helper.from_array(array, name))
        init.raw_data = init.raw_data[:-4]
    return mutate


def declare_dims(name, dims):
    def mutate(model):
        for value in [*model.graph.input, *model.graph.output]:
            if value.name == name:
                value.CopyFrom(helper.make_tensor_value_info(name, TensorProto.FLOAT, dims))
    return mutate


def external_data(name):
    def mutate(model):
        init = _init(model, name)
        init.ClearField("raw_data")
        init.ClearField("float_data")
        init.data_location = TensorProto.EXTERNAL
        init.external_data.append(onnx.StringStringEntryProto(key="location", value="weights.bin"))
    return mutate


def cycle(model):
    """Quant_8 (first activation quantizer) reads the output of the second layer's Relu."""
    _node(model, "Quant_8").input[0] = _node(model, "Relu_1").output[0]


def second_producer(model):
    model.graph.node.append(helper.make_node("Relu", ["Add_0_out0"], ["Relu_0_out0"], name="Relu_twin"))


def bn_variance(value):
    def mutate(model):
        bn = next(n for n in model.graph.node if n.op_type == "BatchNormalization")
        name = bn.input[4]
        array = numpy_helper.to_array(_init(model, name)).copy()
        array[3] = value
        _init(model, name).CopyFrom(numpy_helper.from_array(array, name))
    return mutate


def tfc_weights(transform):
    def mutate(model):
        matmul = next(n for n in model.graph.node if n.op_type == "MatMul")
        quant = next(n for n in model.graph.node if n.output[0] == matmul.input[1] or
                     (n.op_type == "Transpose" and n.output[0] == matmul.input[1]))
        if quant.op_type == "Transpose":
            quant = next(n for n in model.graph.node if n.output[0] == quant.input[0])
        name = quant.input[0]
        array = numpy_helper.to_array(_init(model, name)).copy()
        _init(model, name).CopyFrom(numpy_helper.from_array(transform(array).astype(np.float32), name))
    return mutate


# -- mutations of a lowered model ---------------------------------------------------------------


def first_dense_output(model) -> str:
    return next(n for n in model.graph.node if n.op_type == "Dense").output[0]


def hw_annotation(tensor: Callable, key: str, value: str):
    """Overwrite one entry of the edge annotation of a lowered model's tensor (tensor(model) names it)."""
    def mutate(model):
        name = tensor(model)
        (annotation,) = [a for a in model.graph.quantization_annotation if a.tensor_name == name]
        entries = annotation.quant_parameter_tensor_names
        for entry in entries:
            if entry.key == key:
                entry.value = value
                return
        entries.append(onnx.StringStringEntryProto(key=key, value=value))
    return mutate


def hw_attr(op_type, attribute, value, occurrence=0):
    def mutate(model):
        node = [n for n in model.graph.node if n.op_type == op_type][occurrence]
        for entry in list(node.attribute):
            if entry.name == attribute:
                node.attribute.remove(entry)
        node.attribute.append(helper.make_attribute(attribute, value))
    return mutate


def hw_constant(op_type, port, transform, occurrence=0):
    def mutate(model):
        node = [n for n in model.graph.node if n.op_type == op_type][occurrence]
        name = node.input[port]
        init = _init(model, name)
        array = numpy_helper.to_array(init)
        init.CopyFrom(numpy_helper.from_array(transform(array.copy()).astype(array.dtype), name))
    return mutate


def hw_opset(version):
    def mutate(model):
        for entry in model.opset_import:
            if entry.domain == "qonnx_ir.hw":
                entry.version = version
    return mutate


def hw_drop_first_node(model):
    first = model.graph.node[0]
    model.graph.node.remove(first)
    model.graph.node[0].input[0] = first.input[0]


# -- .npy inputs ---------------------------------------------------------------------------------


def npy(array):
    return lambda path: np.save(path, array, allow_pickle=True)


def npy_huge_header(path):
    header = {"descr": "<f4", "fortran_order": False, "shape": (2**40, 16)}
    with open(path, "wb") as stream:
        np.lib.format.write_array_header_1_0(stream, header)


def npy_bytes(data: bytes):
    return lambda path: path.write_bytes(data)


# -- the cases ----------------------------------------------------------------------------------


@dataclass
class Case:
    verb: str  # transform, info, run, hls, csim, verify, export
    model: str = "jet"  # jet | tfc | jet.hw (the lowered jet tagger) | a file kind (see _model_file)
    mutate: Callable | None = None
    extra: list = field(default_factory=list)  # more arguments; {out} and {x} are filled in
    fragments: tuple = ()  # what the one-line error must contain; empty -> the run must succeed
    inputs: Callable | None = None  # writes the .npy given as --input (run, csim) or --tb-input/--check-input
    output: Callable | None = None  # prepares the -o target (path) before the run; returns the path to pass


def _fifo(path: Path) -> Path:
    os.mkfifo(path)
    return path


def _dangling(path: Path) -> Path:
    path.symlink_to(path.parent / "nowhere" / "x.onnx")
    return path


def _readonly(path: Path) -> Path:
    directory = path.parent / "readonly"
    directory.mkdir()
    directory.chmod(0o555)
    return directory / path.name


def _fake_project(path: Path) -> Path:
    """The data-loss bug: a folder of the user's that happens to hold a project.json."""
    path.mkdir()
    (path / "project.json").write_text('{"name": "my web app"}\n')
    (path / "index.html").write_text("<html>precious</html>")
    return path


def _traversing_project(path: Path) -> Path:
    path.mkdir()
    (path / "project.json").write_text(json.dumps({"generator": "hawq2hls", "top": "t", "backend": "vitis",
                                                   "files": ["../victim.txt", "project.json"]}))
    (path.parent / "victim.txt").write_text("keep me")
    return path


def _symlinked_dir(path: Path) -> Path:
    (path.parent / "real").mkdir()
    path.symlink_to(path.parent / "real")
    return path


def _previous_project(user_file: str):
    """A project written before, holding a file of the user's (inside one of its folders, or beside them)."""
    def prepare(path: Path) -> Path:
        assert main(["hls", str(JET_TAGGER), "-o", str(path), "--backend", "vitis", "--tb-samples", "3"]) == 0
        (path / user_file).write_text("the user's notes")
        return path
    return prepare


CASES: dict[str, Case] = {
    # ---- files -------------------------------------------------------------------------------
    "file-random-bytes": Case("transform", "random", fragments=("not an ONNX model",)),
    "file-truncated": Case("transform", "truncated", fragments=("not an ONNX model",)),
    "file-directory": Case("info", "directory", fragments=("not a regular file",)),
    "file-empty-graph": Case("info", "empty-graph", fragments=("no graph nodes",)),
    "file-raw-data-short": Case("transform", mutate=raw_data_too_short("Quant_6_param0"),
                                fragments=("constant 'Quant_6_param0'", "bytes of data", "corrupt")),
    "file-external-data": Case("transform", mutate=external_data("Quant_6_param0"),
                               fragments=("'Quant_6_param0'", "external file")),
    "file-huge-input": Case("transform", mutate=declare_dims("global_in", [1, 2**31]),
                            fragments=("tensor 'global_in'", "2,147,483,648 values per sample")),
    "file-negative-dim": Case("info", mutate=declare_dims("global_in", [1, -16]), fragments=("negative dimension",)),
    "file-opset-99": Case("transform", mutate=lambda m: m.opset_import[0].__setattr__("version", 99),
                          fragments=("opset 99", "7..22")),
    "file-unknown-domain": Case("transform", mutate=add_node("Foo", ["global_in"], ["foo"], "foo_node", domain="com.acme"),
                                fragments=("unknown op domains", "'com.acme' (foo_node)")),
    # ---- structure ---------------------------------------------------------------------------
    "structure-cycle": Case("transform", mutate=cycle, fragments=("cycle", "Quant_8")),
    "structure-dangling-input": Case("transform", mutate=lambda m: _node(m, "Quant_8").input.__setitem__(0, "nowhere"),
                                     fragments=("node 'Quant_8'", "'nowhere'", "produced by no node")),
    "structure-two-producers": Case("transform", mutate=second_producer,
                                    fragments=("'Relu_0_out0' is produced twice", "Relu_twin")),
    "structure-quant-two-inputs": Case("transform", mutate=lambda m: _node(m, "Quant_8").input.__delitem__(slice(2, 4)),
                                       fragments=("node 'Quant_8'", "Quant takes 4 inputs", "has 2")),
    "structure-add-one-input": Case("info", mutate=lambda m: _node(m, "Add_0").input.__delitem__(1),
                                    fragments=("node 'Add_0'", "invalid Add node")),
    "structure-output-unproduced": Case("transform", mutate=lambda m: setattr(m.graph.output[0], "name", "ghost"),
                                        fragments=("graph output 'ghost' is produced by no node",)),
    "structure-extra-input": Case("transform",
                                  mutate=lambda m: m.graph.input.append(helper.make_tensor_value_info("spare", 1, [1, 3])),
                                  fragments=("graph input 'spare' is used by no node",)),
    "structure-two-data-inputs": Case("transform", mutate=chain(
        lambda m: m.graph.input.append(helper.make_tensor_value_info("second", 1, [1, 16])),
        lambda m: _node(m, "Add_0").input.__setitem__(1, "second")), fragments=("2 data inputs", "global_in, second")),
    "structure-input-without-shape": Case("info", mutate=lambda m: m.graph.input[0].type.tensor_type.ClearField("shape"),
                                          fragments=("graph input 'global_in' declares no tensor type or shape",)),
    "structure-scale-shape-disagrees": Case("transform", mutate=lambda m: [
        v.CopyFrom(helper.make_tensor_value_info("Quant_8_param0", 1, [4])) for v in m.graph.value_info
        if v.name == "Quant_8_param0"], fragments=("constant 'Quant_8_param0' has shape []", "declared [4]")),
    "structure-declared-twice": Case("transform", mutate=lambda m: m.graph.input.append(
        helper.make_tensor_value_info("Quant_8_param0", 1, [4])), fragments=("'Quant_8_param0' is declared twice",)),
    "structure-duplicate-initializer": Case("transform", mutate=lambda m: m.graph.initializer.append(
        copy.deepcopy(_init(m, "Quant_8_param0"))), fragments=("'Quant_8_param0' is defined by two initializers",)),
    "structure-int-input": Case("transform", mutate=lambda m: setattr(m.graph.input[0].type.tensor_type, "elem_type", 7),
                                fragments=("graph input 'global_in' is of type INT64",)),
    "structure-unsupported-ops-listed": Case("transform", mutate=chain(
        insert_after("Relu_0", "Sin", "/act/Sin"), insert_after("Relu_1", "LSTM", "/lstm", ((1, 64, 32), (1, 64, 16)))),
        fragments=("2 nodes of unsupported ops", "Sin ('/act/Sin')", "LSTM ('/lstm')")),
    "structure-unsupported-one": Case("transform", mutate=insert_after("Relu_0", "Sin", "/act/Sin"),
                                      fragments=("node '/act/Sin'", "op Sin is not supported")),
    # ---- numbers -----------------------------------------------------------------------------
    "number-scale-1e-30": Case("transform", mutate=scale_of("Quant_8", 1e-30), fragments=("node 'Quant_8'", "1e-30", "2**-64")),
    "number-scale-denormal": Case("transform", mutate=scale_of("Quant_8", 2.0**-149),
                                  fragments=("node 'Quant_8'", "scale 1.4e-45")),
    "number-scale-huge": Case("info", mutate=scale_of("Quant_8", 1e30), fragments=("node 'Quant_8'", "2**64")),
    "number-scale-nan": Case("transform", mutate=scale_of("Quant_8", np.nan), fragments=("node 'Quant_8'", "positive and finite")),
    "number-scale-inf": Case("info", mutate=scale_of("Quant_8", np.inf), fragments=("node 'Quant_8'", "positive and finite")),
    "number-scale-negative": Case("transform", mutate=scale_of("Quant_8", -0.25), fragments=("node 'Quant_8'", "positive")),
    "number-weight-nan": Case("transform", mutate=weights_of("Quant_6", lambda w: np.where(np.arange(w.size).reshape(w.shape) == 7, np.nan, w)),
                              fragments=("node 'Quant_6'", "NaN values")),
    "number-bias-inf": Case("transform", mutate=weights_of("Quant_7", lambda b: np.where(np.arange(b.size) == 3, np.inf, b)),
                            fragments=("node 'Quant_7'", "infinite values")),
    "number-float-bias-1e30": Case("transform", mutate=chain(lambda m: _node(m, "Add_0").input.__setitem__(1, "huge_bias"),
                                                             lambda m: m.graph.initializer.append(numpy_helper.from_array(
                                                                 np.full(64, 1e30, np.float32), "huge_bias"))),
                                   fragments=("node 'MatMul_0'", "absurdly large")),
    "number-bn-negative-variance": Case("transform", "tfc", mutate=bn_variance(-1.0),
                                        fragments=("BatchNormalization variance must be >= 0",)),
    "number-bn-zero-variance-epsilon": Case("info", "tfc", mutate=chain(bn_variance(0.0), lambda m: [
        a.__setattr__("f", 0.0) for n in m.graph.node if n.op_type == "BatchNormalization" for a in n.attribute
        if a.name == "epsilon"]), fragments=("variance + epsilon > 0",)),
    "number-bits-0": Case("transform", mutate=bits_of("Quant_8", 0.0), fragments=("node 'Quant_8'", "bit width 0 ")),
    "number-bits-33": Case("info", mutate=bits_of("Quant_8", 33.0), fragments=("node 'Quant_8'", "bit width 33 ")),
    "number-bits-2.5": Case("transform", mutate=bits_of("Quant_8", 2.5), fragments=("node 'Quant_8'", "bit width 2.5 ")),
    "number-bits-nan": Case("transform", mutate=bits_of("Quant_8", np.nan), fragments=("node 'Quant_8'", "bit width nan")),
    "number-zeropt-half": Case("transform", mutate=zeropt_of("Quant_8", 0.5), fragments=("node 'Quant_8'", "whole numbers")),
    "number-zeropt-3": Case("transform", mutate=zeropt_of("Quant_8", 3.0), fragments=("node 'Quant_8'", "zero point must be 0")),
    "number-rounding-unknown": Case("transform", mutate=set_attr("Quant_8", "rounding_mode", "SIDEWAYS"),
                                    fragments=("node 'Quant_8'", "rounding_mode SIDEWAYS is unknown")),
    "number-rounding-ceil": Case("transform", mutate=set_attr("Quant_8", "rounding_mode", "CEIL"),
                                 fragments=("node 'Quant_8'", "rounding_mode CEIL is not supported")),
    "number-signed-2": Case("transform", mutate=set_attr("Quant_8", "signed", 2), fragments=("node 'Quant_8'", "signed must be 0 or 1")),
    "number-bn-negative-epsilon": Case("transform", "tfc", mutate=lambda m: [
        a.__setattr__("f", -1.0) for n in m.graph.node if n.op_type == "BatchNormalization" for a in n.attribute
        if a.name == "epsilon"], fragments=("epsilon",)),
    # accepted: small-but-sane numbers give exact results
    "number-scale-2^-30-accepted": Case("transform", mutate=chain(scale_of("Quant_6", 2.0**-30),
                                                                  scale_of("Quant_7", 2.0**-30))),
    "number-weights-scaled-up-accepted": Case("transform", mutate=weights_of("Quant_6", lambda w: w * 4)),
    # ---- names -------------------------------------------------------------------------------
    "name-traversal": Case("transform", mutate=rename_node("MatMul_0", "../../etc/x"), fragments=("'..'", "rename")),
    "name-semicolon": Case("info", mutate=rename_node("MatMul_0", "a;rm -rf /"), fragments=("'a;rm -rf /'", "';'")),
    "name-backtick-tensor": Case("transform", mutate=rename_tensor("Relu_0_out0", "t`x`"), fragments=("'t`x`'", "'`'")),
    "name-newline": Case("info", mutate=rename_node("MatMul_0", "a\nb"), fragments=("contains",)),
    "name-dollar": Case("hls", mutate=rename_node("MatMul_0", "$HOME"), extra=["--backend", "vitis"], fragments=("'$'",)),
    "name-gemm-kept-in-errors": Case("transform", "gemm", fragments=("node 'Gemm_2'", "alpha or beta other than 1")),
    "name-unnamed-unsupported": Case("transform", mutate=chain(insert_after("Relu_0", "Sin", "x"),
                                                               lambda m: setattr(_node(m, "x"), "name", "")),
                                     fragments=("op Sin is not supported",)),
    "name-long-accepted": Case("hls", mutate=rename_node("MatMul_1", "layer_" + "x" * 900), extra=["--backend", "catapult"]),
    "name-keyword-accepted": Case("hls", mutate=rename_node("MatMul_1", "namespace"), extra=["--backend", "vitis"]),
    # ---- outputs -------------------------------------------------------------------------------
    "output-dangling-symlink": Case("transform", output=_dangling, fragments=("symbolic link",)),
    "output-readonly-dir": Case("transform", output=_readonly, fragments=("not writable",)),
    "output-fifo": Case("transform", output=_fifo, fragments=("a FIFO",)),
    "output-char-device": Case("run", "jet.hw", output=lambda p: Path("/dev/null"), fragments=("/dev/null is a character device",)),
    "output-directory": Case("transform", output=lambda p: (p.mkdir() or p), fragments=("is a directory",)),
    "output-hls-fake-project": Case("hls", output=_fake_project, extra=["--backend", "vitis"],
                                    fragments=("not a project written by hawq2hls",)),
    "output-hls-traversing-project": Case("hls", output=_traversing_project, extra=["--backend", "vitis"],
                                          fragments=("not a project written by hawq2hls",)),
    "output-hls-symlink": Case("hls", output=_symlinked_dir, extra=["--backend", "vitis"], fragments=("symbolic link",)),
    "output-hls-fifo": Case("hls", output=_fifo, extra=["--backend", "vitis"], fragments=("not a directory",)),
    "output-hls-file": Case("hls", output=lambda p: (p.write_text("x") and p), extra=["--backend", "vitis"],
                            fragments=("not a directory",)),
    "output-hls-user-file-in-firmware": Case("hls", output=_previous_project("firmware/notes.txt"),
                                             extra=["--backend", "vitis"], fragments=("notes.txt was not written by hawq2hls",)),
    "output-hls-previous-project-accepted": Case("hls", output=_previous_project("synthesis_notes.txt"),
                                                 extra=["--backend", "catapult"]),
    "output-verify-file": Case("verify", output=lambda p: (p.write_text("x") and p), extra=["--samples", "5"],
                               fragments=("not a directory",)),
    # ---- options -------------------------------------------------------------------------------
    "option-multiplier-bits-64": Case("transform", "tfc", extra=["--multiplier-bits", "64"], fragments=("--multiplier-bits", "2..62")),
    "option-softmax-exp-bits-100": Case("transform", extra=["--softmax-exp-bits", "100"], fragments=("--softmax-exp-bits", "1..24")),
    "option-threshold-max-bits-32": Case("transform", "tfc", extra=["--threshold-max-bits", "32"],
                                         fragments=("--threshold-max-bits", "0..10")),
    "option-table-size-1e9": Case("transform", extra=["--softmax-table-size", "1e9"], fragments=("--softmax-table-size", "'1e9'")),
    "option-table-size-huge": Case("transform", extra=["--softmax-table-size", "1000000000"], fragments=("4..65536",)),
    "option-input-type-2000": Case("transform", extra=["--input-type", "fixed<2000,6>"], fragments=("--input-type",)),
    "option-input-type-int-bits": Case("transform", extra=["--input-type", "fixed<8,300>"], fragments=("--input-type",)),
    "option-softmax-out-signed": Case("transform", extra=["--softmax-out-type", "fixed<18,2>"], fragments=("unsigned",)),
    "option-output-frac-100": Case("transform", extra=["--output-frac-bits", "100"], fragments=("0..32",)),
    "option-reuse-negative": Case("hls", extra=["--backend", "vitis", "--reuse", "-1"], fragments=("--reuse",)),
    "option-reuse-letters": Case("transform", extra=["--reuse", "four"], fragments=("--reuse", "'four'")),
    "option-clock-nan": Case("hls", extra=["--backend", "vitis", "--clock-ns", "nan"], fragments=("--clock-ns",)),
    "option-clock-inf": Case("hls", extra=["--backend", "vitis", "--clock-ns", "inf"], fragments=("--clock-ns",)),
    "option-check-samples-negative": Case("transform", extra=["--check-samples", "-5"], fragments=("--check-samples",)),
    "option-tb-samples-0": Case("hls", extra=["--backend", "vitis", "--tb-samples", "0"], fragments=("--tb-samples",)),
    "option-verify-samples-0": Case("verify", extra=["--samples", "0"], fragments=("--samples",)),
    "option-export-no-batch": Case("export", extra=["--input-shape", "16"], fragments=("no batch dimension", "1,16")),
    "option-export-zero-dim": Case("export", extra=["--input-shape", "1,0"], fragments=("dimension <= 0",)),
    "option-top-keyword-accepted": Case("hls", extra=["--backend", "vitis", "--top", "int"]),
    # ---- .npy inputs -----------------------------------------------------------------------------
    "npy-complex": Case("run", "jet.hw", inputs=npy(np.zeros((4, 16), complex)), fragments=("complex",)),
    "npy-scalar": Case("run", "jet.hw", inputs=npy(np.float32(1.0)), fragments=("a scalar",)),
    "npy-nan": Case("run", "jet.hw", inputs=npy(np.full((4, 16), np.nan)), fragments=("NaN or infinite",)),
    "npy-inf": Case("csim", "project", inputs=npy(np.full((4, 16), np.inf)), fragments=("NaN or infinite",)),
    "npy-empty": Case("run", "jet.hw", inputs=npy(np.zeros((0, 16))), fragments=("no samples",)),
    "npy-wrong-features": Case("csim", "project", inputs=npy(np.zeros((4, 12))), fragments=("12 values per sample",)),
    "npy-wrong-sample-shape": Case("run", "tfc.hw", inputs=npy(np.zeros((2, 28, 28, 1))),
                                   fragments=("samples of shape (28, 28, 1)", "(1, 28, 28)")),
    "npy-bool": Case("run", "jet.hw", inputs=npy(np.ones((4, 16), bool)), fragments=("bool",)),
    "npy-objects": Case("run", "jet.hw", inputs=npy(np.array([{"a": 1}, None], dtype=object)), fragments=("Python objects",)),
    "npy-structured": Case("run", "jet.hw", inputs=npy(np.zeros(4, dtype=[("a", "f4"), ("b", "i4")])),
                           fragments=("not real numbers",)),
    "npy-huge-header": Case("run", "jet.hw", inputs=npy_huge_header, fragments=("not a readable .npy array",)),
    "npy-truncated": Case("verify", inputs=lambda p: (np.save(p, np.zeros((50, 16))), p.write_bytes(p.read_bytes()[:-64])),
                          extra=["--input", "{x}"], fragments=("not a readable .npy",)),
    "npy-not-npy": Case("run", "jet.hw", inputs=npy_bytes(b"PK\x03\x04 zip"), fragments=("not a .npy file",)),
    "npy-tb-input-nan": Case("hls", inputs=npy(np.full((3, 16), np.nan)), extra=["--backend", "vitis", "--tb-input", "{x}"],
                             fragments=("NaN or infinite",)),
    "npy-check-input-wrong": Case("transform", inputs=npy(np.zeros((3, 7))), extra=["--check-input", "{x}"],
                                  fragments=("7 values per sample",)),
    "npy-int-accepted": Case("run", "jet.hw", inputs=npy(np.arange(64).reshape(4, 16) % 5 - 2)),
    "npy-one-sample-accepted": Case("run", "jet.hw", inputs=npy(np.linspace(-3, 3, 16))),
    # ---- lowered models made by hand -------------------------------------------------------------
    "hw-garbage-type": Case("run", "jet.hw", mutate=hw_annotation(first_dense_output, "hw_type", "fixed<banana>"),
                            fragments=("unreadable hardware-dialect annotation",)),
    "hw-type-too-wide": Case("info", "jet.hw", mutate=hw_annotation(first_dense_output, "hw_type", "fixed<900,2>"), fragments=("1..64",)),
    "hw-bogus-mode": Case("run", "jet.hw", mutate=hw_attr("Requant", "mode", "magic"),
                          fragments=("node 'Quant_8'", "mode='magic'", "shift, multiply_shift, thresholds")),
    "hw-unknown-attribute": Case("run", "jet.hw", mutate=hw_attr("Dense", "speed", 11),
                                 fragments=("node 'MatMul_0'", "unknown attribute(s) speed")),
    "hw-reuse-0": Case("hls", "jet.hw", mutate=hw_attr("Dense", "reuse_factor", 0), extra=["--backend", "vitis"],
                       fragments=("node 'MatMul_0'", "reuse_factor=0 is below 1")),
    "hw-weight-out-of-type": Case("run", "jet.hw", mutate=hw_constant("Dense", 1, lambda w: w * 9),
                                  fragments=("node 'MatMul_0'", "do not fit its type")),
    "hw-accumulator-inconsistent": Case("info", "jet.hw", mutate=hw_annotation(first_dense_output, "hw_type", "fixed<40,10,RND_CONV,WRAP>"),
                                        fragments=("node 'MatMul_0'", "inconsistent")),
    "hw-shift-huge": Case("run", "jet.hw", mutate=hw_attr("Requant", "shift", [1000]), fragments=("above 128",)),
    "hw-old-dialect": Case("run", "jet.hw", mutate=hw_opset(1), fragments=("version 1 of the hardware dialect",)),
    "hw-no-input-quant": Case("run", "jet.hw", mutate=hw_drop_first_node, fragments=("'global_in' has no fixed-point type",)),
    "hw-softmax-table-increasing": Case("run", "jet.hw", mutate=hw_constant("Softmax", 1, lambda t: t[::-1]),
                                        fragments=("node 'Softmax_0'", "never increase")),
}


# -- running a case ------------------------------------------------------------------------------


def _model_file(case: Case, directory: Path, lowered: dict[str, Path]) -> Path:
    path = directory / "model.onnx"
    if case.model in ("jet.hw", "tfc.hw"):
        model = onnx.load(str(lowered[case.model]))
    elif case.model == "random":
        path.write_bytes(np.random.default_rng(7).integers(0, 256, 4096, dtype=np.uint8).tobytes())
        return path
    elif case.model == "truncated":
        path.write_bytes(JET_TAGGER.read_bytes()[:1000])
        return path
    elif case.model == "directory":
        path.mkdir()
        return path
    elif case.model == "empty-graph":
        onnx.save(helper.make_model(helper.make_graph([], "g", [], [])), str(path))
        return path
    elif case.model == "gemm":
        model = _gemm_model()
    else:
        model = copy.deepcopy(JET if case.model == "jet" else TFC)
    if case.mutate is not None:
        case.mutate(model)
    onnx.save(model, str(path))
    return path


def _gemm_model() -> onnx.ModelProto:
    """x -> Quant -> Gemm(alpha=0.5, Quant W) named Gemm_2, as a user's file would name it."""
    nodes, inits = [], []

    def const(name, value):
        inits.append(numpy_helper.from_array(np.asarray(value, np.float32), name))
        return name

    quant = "qonnx.custom_op.general"
    nodes.append(helper.make_node("Quant", ["x", const("s", 0.0625), const("z", 0.0), const("b", 8.0)], ["xq"],
                                  name="Quant_0", domain=quant, signed=1, narrow=0, rounding_mode="ROUND"))
    nodes.append(helper.make_node("Quant", [const("w", np.ones((4, 6)) * 0.25), "s", "z", "b"], ["wq"], name="Quant_1",
                                  domain=quant, signed=1, narrow=0, rounding_mode="ROUND"))
    nodes.append(helper.make_node("Gemm", ["xq", "wq"], ["y"], name="Gemm_2", transB=1, alpha=0.5))
    graph = helper.make_graph(nodes, "gemm", [helper.make_tensor_value_info("x", 1, [1, 6])],
                              [helper.make_tensor_value_info("y", 1, [1, 4])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13), helper.make_opsetid(quant, 1)])


def _tree(directory: Path) -> dict[str, bytes | None]:
    return {str(p.relative_to(directory)): (p.read_bytes() if p.is_file() and not p.is_symlink() else None)
            for p in sorted(directory.rglob("*")) if not (p.exists() and stat.S_ISFIFO(p.stat().st_mode))}


@pytest.fixture(scope="module")
def lowered(tmp_path_factory) -> dict[str, Path]:
    directory = tmp_path_factory.mktemp("lowered")
    files = {}
    for name, source in (("jet.hw", JET_TAGGER), ("tfc.hw", MNIST_TFC)):
        files[name] = directory / f"{name}.onnx"
        assert main(["transform", str(source), "-o", str(files[name]), "--check-samples", "0"]) == 0
    return files


@pytest.fixture(scope="module")
def project(lowered, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("project") / "jet_vitis"
    assert main(["hls", str(lowered["jet.hw"]), "-o", str(path), "--backend", "vitis"]) == 0
    return path


EXPORT_SPEC = Path(__file__).resolve().parents[1] / "examples" / "digits_demo.py"


def _argv(case: Case, model: Path, out: Path, x: Path, project: Path) -> list[str]:
    extra = [str(a).format(out=out, x=x) for a in case.extra]
    if case.verb == "transform":
        return ["transform", str(model), "-o", str(out), "--check-samples", "0", *extra]
    if case.verb == "info":
        return ["info", str(model), *extra]
    if case.verb == "run":
        return ["run", str(model), "--input", str(x), "-o", str(out), *extra]
    if case.verb == "hls":
        return ["hls", str(model), "-o", str(out), *(extra if "--backend" in extra else ["--backend", "vitis", *extra])]
    if case.verb == "csim":
        return ["csim", str(project), "--input", str(x), "-o", str(out), *extra]
    if case.verb == "verify":
        base = ["verify", str(model), "--backend", "vitis", "--io", "parallel", "-o", str(out)]
        return base + (extra if "--samples" in extra or "--input" in extra else ["--samples", "20", *extra])
    if case.verb == "export":
        return ["export", f"{EXPORT_SPEC}:make_model", "-o", str(out), "--samples", "0", *extra]
    raise AssertionError(case.verb)


@pytest.mark.parametrize("name", list(CASES))
def test_fuzz_case(name, lowered, project, tmp_path, capsys):
    case = CASES[name]
    work = tmp_path / "work"
    work.mkdir()
    model = _model_file(case, work, lowered)
    x = work / "x.npy"
    if case.inputs is not None:
        case.inputs(x)
    else:
        shape = (4, 16) if case.model != "tfc.hw" else (4, 1, 28, 28)
        np.save(x, np.random.default_rng(0).uniform(-2, 2, shape))
    results = tmp_path / "results"
    results.mkdir()
    target = results / ("y.npy" if case.verb in ("run", "csim") else "out" if case.verb in ("hls", "verify") else "m.onnx")
    if case.output is not None:
        target = case.output(target)
    work_before, results_before, project_before = _tree(work), _tree(results), _tree(project)
    capsys.readouterr()
    code = main(_argv(case, model, target, x, project))
    out, err = capsys.readouterr()
    for directory in results.glob("readonly"):
        directory.chmod(0o755)
    if case.fragments:
        assert code == 2, f"exit {code}, stderr {err!r}"
        assert "Traceback" not in err
        lines = err.strip().splitlines()
        assert len(lines) == 1, err
        assert lines[0].startswith(f"qonnx {case.verb}: error: "), lines[0]
        for fragment in case.fragments:
            assert fragment in lines[0], f"{fragment!r} not in {lines[0]!r}"
        assert _tree(work) == work_before and _tree(results) == results_before, "something was written"
        assert _tree(project) == project_before
        if case.output is _traversing_project:
            assert (results / "victim.txt").read_text() == "keep me"
    else:
        assert code == 0, err
        _check_accepted(case, model, target, x, lowered)


def _check_accepted(case: Case, model: Path, target: Path, x: Path, lowered) -> None:
    """Exit 0 is only allowed with the right numbers."""
    inputs = np.load(x)
    if case.verb == "transform":
        ours = execute(load(target), np.random.default_rng(1).uniform(-8, 8, (500, 16)))
        reference = execute_qonnx(load(model), np.random.default_rng(1).uniform(-8, 8, (500, 16)))["global_out"]
        # the jet tagger's logits are exact; its softmax is a table within its reported bound 0.0154
        assert np.max(np.abs(ours - reference)) <= 0.0154
        assert np.mean(ours.argmax(1) == reference.argmax(1)) >= 0.99
    elif case.verb == "run":
        expected = execute(load(model), inputs.reshape(-1, 16))
        assert np.array_equal(np.load(target).reshape(expected.shape), expected)
    elif case.verb == "hls":
        from hlsgen import Project

        built = Project(target)
        tb = np.loadtxt(target / "tb_data" / "tb_input_features.dat")
        assert np.array_equal(built.predict(tb, codes=True), execute(built.model, tb, codes=True))
        for file in target.rglob("*"):
            assert file.resolve().is_relative_to(target.resolve())
        if case.output is not None:  # a previous project: the user's file beside it is kept, ours replaced
            assert (target / "synthesis_notes.txt").read_text() == "the user's notes"
            assert json.loads((target / "project.json").read_text())["backend"] == "catapult"


def test_the_suite_covers_every_family_with_at_least_80_cases():
    families = {name.split("-")[0] for name in CASES}
    assert families == {"file", "structure", "number", "name", "output", "option", "npy", "hw"}
    assert len(CASES) >= 80
