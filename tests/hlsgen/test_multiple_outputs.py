"""Models with several outputs, on every floor: export, lowering, the interpreter and `qonnx run`,
the generated C++ on both backends and both io styles, its testbench, `qonnx csim`, `qonnx verify`.

Two models:
- a Brevitas MLP returning (last hidden activation, logits), exported with `qonnx_ir.export`: its
  hidden activation is a graph output and the last layer's input;
- a CNN with an early exit (tests/cnn_zoo.py, head="early_exit") returning (block 1's pooled
  image, early logits on it, final logits), names given at export: the pooled image leaves
  channels first, as PyTorch gives it, and fans out to the output, the early head and block 2.

g++ builds: 8 projects (2 models x 2 backends x 2 io styles), 2 testbenches, 2 through the CLI.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
from brevitas_zoo import MlpConfig, make_mlp
from brevitas_zoo import float64_forward as mlp_float64
from cnn_zoo import INPUT_RANGE, CnnConfig, export_cnn_file, make_cnn
from cnn_zoo import float64_forward as cnn_float64
from torch import nn

import qonnx_ir
from hlsgen import generate
from hlsgen.headers import find_headers
from qonnx_ir import HwGraph, execute, load, save
from qonnx_ir.cli import main
from qonnx_ir.interpreter import CHUNK
from transforms import lower

PAIRINGS = [(backend, io) for backend in ("vitis", "catapult") for io in ("parallel", "stream")]
CNN = CnnConfig(head="early_exit")
CNN_OUTPUTS = ["pooled", "early_logits", "logits"]
SAMPLES = 300


class HiddenAndLogits(nn.Module):
    """An MLP of tests/brevitas_zoo.py that also returns the input of its last layer."""

    def __init__(self, mlp: nn.Sequential):
        super().__init__()
        self.mlp = mlp

    def forward(self, x):
        hidden = self.mlp[:-1](x)  # the last activation quantizer's QuantTensor
        return hidden.value, self.mlp[-1](hidden)


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("multiple_outputs")


@pytest.fixture(scope="module")
def models(work):
    """name -> (Brevitas model, float64 forward, lowered model, inputs), built on first use."""
    cache = {}

    def get(name: str):
        if name not in cache:
            if name == "mlp":
                brevitas = HiddenAndLogits(make_mlp(MlpConfig())).eval()
                path = work / "mlp.onnx"
                qonnx_ir.export(brevitas, (1, 12), path, progress=lambda _: None)
                forward, shape = mlp_float64, (12,)
            else:
                brevitas = make_cnn(CNN)
                path = export_cnn_file(brevitas, CNN, work / "cnn.onnx", output_names=CNN_OUTPUTS)
                forward, shape = cnn_float64, CNN.input_shape
            lowered, _ = lower(load(path))
            x = np.random.default_rng(5).uniform(-INPUT_RANGE, INPUT_RANGE, (SAMPLES, *shape))
            cache[name] = (brevitas, forward, lowered, x)
        return cache[name]

    return get


def qonnx(argv, capsys) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# --- export, lowering, interpreter -------------------------------------------------------------


def test_lowering_keeps_every_output_in_order_and_the_fan_out(models):
    _, _, mlp, _ = models("mlp")
    graph = HwGraph(mlp)
    assert graph.outputs == ["global_out", "global_out_1"]  # qonnx_ir.export's readable names
    hidden = graph.outputs[0]
    assert graph.producer_op(hidden).op_type == "Requant"
    assert [op.op_type for op in graph.consumer_ops(hidden)] == ["Dense"]
    assert graph.consumer_ops(hidden)[0].output_edge() is graph.edge("global_out_1")

    _, _, cnn, _ = models("cnn")
    graph = HwGraph(cnn)
    assert graph.outputs == CNN_OUTPUTS
    assert graph.producer_op("pooled").op_type == "Pool"
    assert sorted(op.op_type for op in graph.consumer_ops("pooled")) == ["Flatten", "Pad"]
    assert graph.channels_first("pooled") and not graph.channels_first("logits")


@pytest.mark.parametrize("name", ["mlp", "cnn"])
def test_interpreter_equals_brevitas_float64_on_every_output(name, models):
    brevitas, forward, lowered, x = models(name)
    if name == "mlp":  # more than one chunk of the interpreter
        x = np.random.default_rng(6).uniform(-INPUT_RANGE, INPUT_RANGE, (CHUNK + 808, 12))
    expected = forward(brevitas, x)
    got = execute(lowered, x)
    assert list(got) == HwGraph(lowered).outputs and len(expected) == len(got)
    for (output, values), reference in zip(got.items(), expected):
        assert values.shape == reference.shape, output
        assert np.array_equal(values, reference), output
    codes = execute(lowered, x, codes=True)
    graph = HwGraph(lowered)
    for output in graph.outputs:
        edge = graph.edge(output)
        assert np.array_equal(graph.to_user_layout(output, graph.to_edge_layout(output, codes[output])
                                                   * edge.real_scale), got[output])


def test_export_refuses_a_quant_tensor_among_several_outputs(tmp_path):
    class Raw(HiddenAndLogits):
        def forward(self, x):
            hidden = self.mlp[:-1](x)
            return hidden, self.mlp[-1](hidden)

    with pytest.raises(qonnx_ir.QonnxError, match=r"^the model returns a QuantTensor among several outputs: "
                                                  r"return its \.value$"):
        qonnx_ir.export(Raw(make_mlp(MlpConfig())).eval(), (1, 12), tmp_path / "raw.onnx", progress=lambda _: None)
    assert not any(tmp_path.iterdir())


# --- qonnx run -------------------------------------------------------------------------------


def test_qonnx_run_writes_every_output_to_one_npz(models, tmp_path, capsys):
    _, _, lowered, x = models("cnn")
    model, x_path = tmp_path / "cnn.hw.onnx", tmp_path / "x.npy"
    save(lowered, model)
    np.save(x_path, x[:50])
    for codes in ([], ["--codes"]):
        y_path = tmp_path / f"y{len(codes)}.npz"
        code, out, err = qonnx(["run", model, "--input", x_path, "-o", y_path, *codes], capsys)
        assert (code, err) == (0, "")
        assert out == f"ran 50 samples: {y_path}: pooled (50, 4, 4, 4), early_logits (50, 3), logits (50, 3)\n"
        expected = execute(lowered, x[:50], codes=bool(codes))
        with np.load(y_path) as written:
            assert written.files == CNN_OUTPUTS
            for output in CNN_OUTPUTS:
                assert written[output].dtype == expected[output].dtype
                assert np.array_equal(written[output], expected[output])

    code, out, err = qonnx(["run", model, "--input", x_path, "-o", tmp_path / "y.npy"], capsys)
    assert code == 2 and out == ""
    assert err == ("qonnx run: error: the model has 3 outputs (pooled, early_logits, logits): give -o a .npz file, "
                   "which holds one array per output by name (e.g. -o y.npz)\n")
    assert not (tmp_path / "y.npy").exists()


def test_qonnx_run_of_one_output_writes_npy_as_before_or_npz_by_name(qonnx_graph, tmp_path, capsys):
    g = qonnx_graph("x", (1, 3))
    q = g.quant("x", scale=2**-4, bits=8)
    model = tmp_path / "one.hw.onnx"
    save(lower(g.build(g.matmul(q, g.quantized_weight(np.arange(6).reshape(3, 2) - 3, 2**-2, 4)), (1, 2)))[0],
         model)
    x = np.random.default_rng(0).uniform(-2, 2, (7, 3))
    np.save(tmp_path / "x.npy", x)
    expected = execute(load(model), x)
    code, out, _ = qonnx(["run", model, "--input", tmp_path / "x.npy", "-o", tmp_path / "y.npy"], capsys)
    assert code == 0 and out == f"ran 7 samples: {tmp_path / 'y.npy'} (7, 2)\n"
    assert np.array_equal(np.load(tmp_path / "y.npy"), expected)
    code, out, _ = qonnx(["run", model, "--input", tmp_path / "x.npy", "-o", tmp_path / "y.npz"], capsys)
    assert code == 0 and out == f"ran 7 samples: {tmp_path / 'y.npz'}: y (7, 2)\n"
    with np.load(tmp_path / "y.npz") as written:
        assert written.files == ["y"] and np.array_equal(written["y"], expected)


def test_run_and_csim_help_say_how_several_outputs_are_written(capsys):
    for verb in ("run", "csim"):
        assert main([verb, "--help"]) == 0
        out = " ".join(capsys.readouterr().out.split())
        assert "-o y.npz writes every graph output, one array per output named as the model names it" in out
        assert ".npy (one output) or .npz (every output, by name)" in out


# --- the generated project -------------------------------------------------------------------


@pytest.mark.parametrize("backend,io", PAIRINGS)
def test_top_function_has_one_port_per_output_in_graph_order(models, tmp_path, backend, io):
    _, _, lowered, _ = models("mlp")
    project = generate(lowered, tmp_path / "prj", backend=backend, io=io, tb_samples=3)
    header = (project.path / "firmware" / "qnn_top.h").read_text()
    if io == "parallel":
        signature = "void qnn_top(const input_t x[N_IN], result0_t y0[N_OUT0], result1_t y1[N_OUT1]);"
    else:
        signature = ("void qnn_top(qnn::stream<input_token_t> &x, qnn::stream<result0_token_t> &y0, "
                     "qnn::stream<result1_token_t> &y1);")
    assert signature in header.splitlines()
    parameters = (project.path / "firmware" / "parameters.h").read_text()
    assert "static const unsigned N_IN = 12, N_OUT = 17, N_OUTPUTS = 2;" in parameters
    assert "static const unsigned N_OUT0 = 12, OUT0_TOKENS = 1, OUT0_TOKEN_SIZE = 12, OUT0_OFFSET = 0;" in parameters
    assert "static const unsigned N_OUT1 = 5, OUT1_TOKENS = 1, OUT1_TOKEN_SIZE = 5, OUT1_OFFSET = 12;" in parameters
    assert "//   y0: graph output 'global_out', 12 values" in parameters
    graph = HwGraph(lowered)
    metadata = json.loads((project.path / "project.json").read_text())
    assert (metadata["n_out"], "output_type" in metadata) == (17, False)
    assert metadata["outputs"] == [
        {"port": "y0", "tensor": "global_out", "n": 12, "offset": 0, "shape": [12],
         "type": str(graph.edge("global_out").type), "tokens": 1},
        {"port": "y1", "tensor": "global_out_1", "n": 5, "offset": 12, "shape": [5],
         "type": str(graph.edge("global_out_1").type), "tokens": 1}]
    readme = (project.path / "README.md").read_text()
    assert f"```cpp\n{signature}\n```" in readme
    for port in metadata["outputs"]:
        assert re.search(rf"^\| `{port['port']}(\[{port['n']}\])?`.* \| graph output `{port['tensor']}`: ", readme,
                         re.MULTILINE), port
    assert "The 2 output ports `y0`, `y1` are the model's graph outputs, in their order" in readme
    # the testbench data: one line per sample, y0's codes then y1's
    rows = np.loadtxt(project.path / "tb_data" / "tb_output_codes.dat", dtype=np.int64)
    inputs = np.loadtxt(project.path / "tb_data" / "tb_input_features.dat")
    codes = execute(lowered, inputs, codes=True)
    assert np.array_equal(rows, np.concatenate([codes["global_out"], codes["global_out_1"]], axis=1))


def test_a_graph_output_read_by_later_layers_is_cloned_in_io_stream(models, tmp_path):
    _, _, lowered, _ = models("mlp")
    project = generate(lowered, tmp_path / "mlp", backend="vitis", io="stream", tb_samples=3)
    top = (project.path / "firmware" / "qnn_top.cpp").read_text()
    clones = re.findall(r"qnn::clone_stage<.*>\((\w+), (\w+), (\w+)\);", top)
    assert len(clones) == 1
    source, copy, rest = clones[0]
    assert re.search(rf"\n    l\d+_\w+_stage\({copy}, \w+\);", top)  # the last Dense reads the copy
    assert f"qnn::codes_to_fixed_stage<OUT0_TOKEN_SIZE, OUT0_TOKENS>({rest}, y0);" in top
    assert "QNN_STREAM_DEPTH(" + rest + ", 2)" in top  # a vector: the usual two slots

    _, _, lowered, _ = models("cnn")
    project = generate(lowered, tmp_path / "cnn", backend="vitis", io="stream", tb_samples=3)
    top = (project.path / "firmware" / "qnn_top.cpp").read_text()
    clones = re.findall(r"qnn::clone_stage<.*>\((\w+), (\w+), (\w+)\);", top)
    assert len(clones) == 2 and clones[1][0] == clones[0][2]  # the pooled image, to three readers
    output = clones[1][2]
    assert f"qnn::codes_to_fixed_stage<OUT0_TOKEN_SIZE, OUT0_TOKENS>({output}, y0);" in top
    # The final logits leave 29 tokens after the pooled image: block 2's 3 x 3 window fills after
    # 2 rows and 3 pixels of the padded 6 x 6 image (14 tokens), then Flatten waits for the
    # last of 16 pixels (15). A consumer taking a sample's outputs together reads y0 that late:
    # its stream holds 29 + 2 tokens, capped at the whole image (16). The early logits (14
    # tokens early) are one vector: the usual two slots hold it.
    deep = re.findall(r"qnn::stream<.*> (\w+);  // (.*)\n    QNN_STREAM_DEPTH\(\1, (\d+)\)", top)
    assert deep == [(output, "output y0 is ready 29 tokens before output y2 (a consumer that reads a "
                             "sample's outputs together waits for it)", "16")]
    readme = (project.path / "README.md").read_text()
    assert f"| `{output}` | depth 16 | output y0 is ready 29 tokens before output y2" in readme
    assert "The output ports are such a join too" in readme


@pytest.mark.parametrize("backend,io", PAIRINGS)
@pytest.mark.parametrize("name", ["mlp", "cnn"])
def test_csim_equals_interpreter_on_every_output(name, backend, io, models, tmp_path):
    _, _, lowered, x = models(name)
    project = generate(lowered, tmp_path / "prj", backend=backend, io=io, tb_samples=3)
    expected = execute(lowered, x, codes=True)
    got = project.predict(x, codes=True)
    assert list(got) == list(expected)
    for output in expected:
        assert got[output].shape == expected[output].shape, output
        mismatches = int(np.sum(got[output] != expected[output]))
        assert mismatches == 0, f"{output}: {mismatches} of {got[output].size} codes differ ({backend}, {io})"
    real = project.predict(x)
    for output, values in execute(lowered, x).items():
        assert np.array_equal(real[output], values), output
    input_codes = HwGraph(lowered).nodes[0].evaluate([x[:4]])[0]
    assert project.predict_codes(input_codes).shape == (4, project.metadata["n_out"])  # every port's codes


def _run_testbench(project: Path, backend: str, data: str | None = None) -> subprocess.CompletedProcess:
    binary = project / "tb_run"
    if not binary.exists():
        metadata = json.loads((project / "project.json").read_text())
        sources = [f for f in metadata["files"] if f.startswith("firmware/") and f.endswith(".cpp")]
        headers = [f"-isystem{d}" for d in find_headers(backend).directories]
        built = subprocess.run(["g++", "-std=c++14", "-Wall", "-Wextra", "-DQNN_PLAIN_CXX", "-I", "firmware", *headers,
                                f"tb/{metadata['top']}_test.cpp", *sources, "-o", "tb_run"],
                               cwd=project, capture_output=True, text=True, timeout=600)
        assert built.returncode == 0, built.stderr[-4000:]
        assert "warning:" not in built.stderr, built.stderr[-4000:]
    return subprocess.run(["./tb_run", *([data] if data else [])], cwd=project, capture_output=True, text=True,
                          timeout=120)


@pytest.mark.parametrize("name,backend,io", [("cnn", "vitis", "stream"), ("mlp", "catapult", "parallel")])
def test_testbench_checks_every_output_port(name, backend, io, models, tmp_path):
    _, _, lowered, x = models(name)
    project = generate(lowered, tmp_path / "prj", backend=backend, io=io, tb_inputs=x[:6]).path
    rows = (project / "tb_data" / "tb_output_codes.dat").read_text().splitlines()
    graph = HwGraph(lowered)
    codes = execute(lowered, x[:6], codes=True)
    # the ports' order: the graph's outputs one after the other, images channels last
    assert np.array_equal(np.array([row.split() for row in rows], dtype=np.int64), np.concatenate(
        [graph.to_edge_layout(o, codes[o]).reshape(6, -1) for o in graph.outputs], axis=1))
    run = _run_testbench(project, backend)
    assert (run.returncode, run.stdout.splitlines()[-1]) == (0, "6 samples, 0 mismatches"), run.stdout[-2000:]

    # one wrong expectation in the second port, sample 4: named by port and index
    offset = graph.edge(graph.outputs[0]).size
    values = rows[4].split()
    original = int(values[offset + 2])
    values[offset + 2] = str(original + 1)
    data = tmp_path / "planted"
    data.mkdir()
    (data / "tb_input_codes.dat").write_text((project / "tb_data" / "tb_input_codes.dat").read_text())
    (data / "tb_output_codes.dat").write_text("\n".join(rows[:4] + [" ".join(values)] + rows[5:]) + "\n")
    run = _run_testbench(project, backend, str(data))
    assert run.returncode == 1
    assert run.stdout.splitlines() == [f"mismatch: sample 4, output y1[2]: got {original}, expected {original + 1}",
                                       "6 samples, 1 mismatches"]


# --- qonnx hls / csim / verify ------------------------------------------------------------------


def test_cli_hls_csim_and_verify_handle_several_outputs(models, tmp_path, capsys):
    _, _, lowered, x = models("mlp")
    model, x_path = tmp_path / "mlp.hw.onnx", tmp_path / "x.npy"
    save(lowered, model)
    np.save(x_path, x[:40])
    code, out, err = qonnx(["hls", model, "-o", tmp_path / "prj", "--backend", "catapult"], capsys)
    assert (code, err) == (0, "")
    metadata = json.loads((tmp_path / "prj" / "project.json").read_text())
    ports = ", ".join(f"{p['port']}: {p['n']} x {p['type']} ({p['tensor']})" for p in metadata["outputs"])
    assert f"  interface: 12 x {metadata['input_type']} -> {ports}\n" in out

    code, out, err = qonnx(["csim", tmp_path / "prj", "--input", x_path, "-o", tmp_path / "y.npy"], capsys)
    assert code == 2 and err == ("qonnx csim: error: the model has 2 outputs (global_out, global_out_1): give -o a "
                                 ".npz file, which holds one array per output by name (e.g. -o y.npz)\n")
    code, out, err = qonnx(["csim", tmp_path / "prj", "--input", x_path, "-o", tmp_path / "y.npz", "--codes"], capsys)
    assert code == 0, err
    assert out.splitlines()[-1].endswith(f": {tmp_path / 'y.npz'}: global_out (40, 12), global_out_1 (40, 5) "
                                         "(integer codes)")
    expected = execute(lowered, x[:40], codes=True)
    with np.load(tmp_path / "y.npz") as written:
        assert written.files == ["global_out", "global_out_1"]
        assert all(np.array_equal(written[o], expected[o]) for o in written.files)

    code, out, err = qonnx(["verify", model, "--backend", "vitis", "--io", "parallel", "--samples", "200"], capsys)
    assert code == 0, out + err
    assert "result: bit-exact: 1 of 1 builds equal the interpreter on all 3400 outputs" in out
    assert "200 random inputs U(-1, 1) (seed 0), 17 outputs each (y0 global_out: 12, y1 global_out_1: 5)" in out

