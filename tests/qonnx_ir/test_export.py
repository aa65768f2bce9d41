"""`qonnx export`: a Brevitas MLP from a file or a module; every bad input is one line, exit 2."""

from __future__ import annotations

import re
import textwrap

import onnx
import pytest
import torch

from qonnx_ir.cli import main
from qonnx_ir.brevitas_export import load_factory

# Power-of-two scales everywhere and an integer bias (Int32Bias, scale = input * weight
# scale): every value is a small multiple of 2**-k, so float32 sums are exact in any order
# and onnxruntime must agree with PyTorch exactly.
MODELS_SOURCE = textwrap.dedent('''
    import torch.nn as nn
    from brevitas.nn import QuantIdentity, QuantLinear, QuantReLU
    from brevitas.quant import (Int8ActPerTensorFixedPoint, Int8WeightPerTensorFixedPoint,
                                Int32Bias, Uint8ActPerTensorFixedPoint)


    def make_mlp():
        return nn.Sequential(
            QuantIdentity(act_quant=Int8ActPerTensorFixedPoint, return_quant_tensor=True),
            QuantLinear(16, 32, weight_quant=Int8WeightPerTensorFixedPoint, bias_quant=Int32Bias),
            QuantReLU(act_quant=Uint8ActPerTensorFixedPoint, return_quant_tensor=True),
            QuantLinear(32, 5, weight_quant=Int8WeightPerTensorFixedPoint, bias_quant=Int32Bias),
        )


    def broken():
        raise ValueError("hidden sizes do not add up")


    class Drifting(nn.Module):
        """Adds how often it was called: the traced graph freezes that number, torch does not."""

        def __init__(self):
            super().__init__()
            self.linear = nn.Linear(16, 5)
            self.calls = 0

        def forward(self, x):
            self.calls += 1
            return self.linear(x) + self.calls


    def drifting():
        return Drifting()
''')


@pytest.fixture
def model_file(tmp_path):
    source_dir = tmp_path / "src"
    source_dir.mkdir()
    path = source_dir / "mlp.py"
    path.write_text(MODELS_SOURCE)
    return path


@pytest.fixture
def out_dir(tmp_path):
    path = tmp_path / "out"
    path.mkdir()
    return path


def printed_max_diff(stdout: str) -> float:
    return float(re.search(r"max \|onnx - torch\| = (\S+)", stdout).group(1))


def test_file_spec_exports_one_self_contained_checked_file(model_file, out_dir, capsys):
    output = out_dir / "mlp.onnx"
    code = main(["export", f"{model_file}:make_mlp", "-o", str(output), "--input-shape", "1,16"])
    stdout = capsys.readouterr().out

    assert code == 0
    assert [p.name for p in out_dir.iterdir()] == ["mlp.onnx"]  # no .data file, no leftovers
    model = onnx.load(output, load_external_data=False)
    assert all(t.data_location != onnx.TensorProto.EXTERNAL for t in model.graph.initializer)
    ops = [node.op_type for node in model.graph.node]
    assert ops.count("Quant") == 6  # 2 activations, 2 weights, 2 biases
    assert ops.count("Gemm") + ops.count("MatMul") == 2
    assert "self-check on 256 inputs" in stdout
    assert printed_max_diff(stdout) == 0.0


def test_module_spec_and_checkpoint(model_file, out_dir, tmp_path, monkeypatch, capsys):
    package = tmp_path / "site" / "tiny_models_for_export_test"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "mlp.py").write_text(MODELS_SOURCE)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    from tiny_models_for_export_test.mlp import make_mlp

    checkpoint = tmp_path / "trained.pt"
    torch.save({"model_state_dict": make_mlp().state_dict(), "epoch": 3}, checkpoint)
    output = out_dir / "mlp.onnx"
    code = main(["export", "tiny_models_for_export_test.mlp:make_mlp", "-o", str(output),
                 "--input-shape", "1,16", "--checkpoint", str(checkpoint), "--samples", "32"])

    assert code == 0
    assert [p.name for p in out_dir.iterdir()] == ["mlp.onnx"]
    assert printed_max_diff(capsys.readouterr().out) == 0.0
    loaded = load_factory("tiny_models_for_export_test.mlp:make_mlp", str(checkpoint))
    saved = torch.load(checkpoint, weights_only=True)["model_state_dict"]
    assert torch.equal(loaded[1].weight, saved["1.weight"])


def test_help_has_an_example(capsys):
    assert main(["export", "--help"]) == 0
    assert "qonnx export examples/" in capsys.readouterr().out


def test_check_failure_exits_1_and_writes_nothing(model_file, out_dir, capsys):
    code = main(["export", f"{model_file}:drifting", "-o", str(out_dir / "m.onnx"), "--input-shape", "1,16"])
    assert code == 1
    assert capsys.readouterr().err.startswith("qonnx export: check failed: max |onnx - torch|")
    assert list(out_dir.iterdir()) == []


def mismatched_checkpoint(tmp_path):
    path = tmp_path / "other.pt"
    torch.save(torch.nn.Linear(3, 3).state_dict(), path)
    return ["--checkpoint", str(path)]


BAD_INPUTS = {
    # case: (spec, input shape, extra arguments, words the error must contain)
    "missing file": ("{src}/nope.py:make_mlp", "1,16", None, "does not exist"),
    "no colon": ("{src}/mlp.py", "1,16", None, "no factory"),
    "missing factory": ("{src}/mlp.py:make_cnn", "1,16", None, "no attribute 'make_cnn'"),
    "factory raises": ("{src}/mlp.py:broken", "1,16", None, "hidden sizes do not add up"),
    "shape not integers": ("{src}/mlp.py:make_mlp", "1,x", None, "--input-shape"),
    "shape not positive": ("{src}/mlp.py:make_mlp", "0,16", None, "--input-shape"),
    "shape does not fit": ("{src}/mlp.py:make_mlp", "1,15", None, "check --input-shape"),
    "checkpoint mismatch": ("{src}/mlp.py:make_mlp", "1,16", mismatched_checkpoint, "does not match the model"),
}


@pytest.mark.parametrize("case", BAD_INPUTS, ids=list(BAD_INPUTS))
def test_bad_input_is_one_line_exit_2_and_no_file(case, model_file, out_dir, tmp_path, capsys):
    spec, shape, extra, expected_words = BAD_INPUTS[case]
    argv = ["export", spec.format(src=model_file.parent), "-o", str(out_dir / "m.onnx"), "--input-shape", shape]
    argv += extra(tmp_path) if extra else []

    code = main(argv)
    stderr_lines = capsys.readouterr().err.splitlines()

    assert code == 2
    assert len(stderr_lines) == 1, stderr_lines
    assert stderr_lines[0].startswith("qonnx export: error: ")
    assert expected_words in stderr_lines[0]
    assert list(out_dir.iterdir()) == []
