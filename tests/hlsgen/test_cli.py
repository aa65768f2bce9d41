"""The hlsgen verbs through `qonnx_ir.cli.main`: hls, csim, verify.

g++ builds take seconds each, so only four tests compile (csim, two verify runs, the hostile
names); everything else checks what is written or refused.
"""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path

import numpy as np
import pytest

from hlsgen.names import CPP_KEYWORDS
from paths import JET_TAGGER
from qonnx_ir.cli import main

IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def qonnx(argv, capsys) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def one_line_error(err: str, verb: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"qonnx {verb}: error: "), err
    return lines[0]


def tree(directory: Path) -> set[Path]:
    return {p.relative_to(directory) for p in directory.rglob("*")}


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cli")


@pytest.fixture(scope="module")
def x_npy(work) -> Path:
    """Inputs beyond the input type's range too (saturation), as a user's file."""
    path = work / "x.npy"
    np.save(path, np.random.default_rng(7).uniform(-40, 40, (300, 16)) * np.random.default_rng(8).random((300, 1)))
    return path


@pytest.fixture(scope="module")
def lowered_jet(work) -> Path:
    path = work / "jet.hw.onnx"
    assert main(["transform", str(JET_TAGGER), "-o", str(path), "--check-samples", "0"]) == 0
    return path


@pytest.fixture(scope="module")
def catapult_project(work) -> Path:
    """The raw jet tagger as a Catapult project (written, not compiled)."""
    path = work / "jet_catapult"
    assert main(["hls", str(JET_TAGGER), "-o", str(path), "--backend", "catapult"]) == 0
    return path


# --- help --------------------------------------------------------------------------------------


@pytest.mark.parametrize("verb", ["hls", "csim", "verify"])
def test_help_shows_an_example(verb, capsys):
    assert main([verb, "--help"]) == 0
    out = capsys.readouterr().out
    assert "example" in out and f"qonnx {verb} " in out


# --- qonnx hls ---------------------------------------------------------------------------------


@pytest.mark.parametrize("backend, io, command", [("vitis", "parallel", "vitis_hls -f build_prj.tcl"),
                                                  ("catapult", "stream", "catapult -shell -f build_prj.tcl")])
def test_hls_writes_a_project_from_raw_qonnx(backend, io, command, tmp_path, capsys):
    out_dir = tmp_path / "prj"
    code, out, err = qonnx(["hls", JET_TAGGER, "-o", out_dir, "--backend", backend, "--io", io], capsys)
    assert code == 0, err
    metadata = json.loads((out_dir / "project.json").read_text())
    assert (metadata["backend"], metadata["io"], metadata["n_in"], metadata["n_out"]) == (backend, io, 16, 5)
    firmware = out_dir / "firmware"
    for name in ["parameters.h", "qnn_backend.h", "qnn_top.cpp", "qnn_top.h", "qnn/portability.h", "qnn/stage.h", "qnn/dense.h"]:
        assert (firmware / name).is_file(), name
    assert sorted(p.name for p in (firmware / "weights").iterdir()) == sorted(
        f"{l['ident']}.h" for l in metadata["layers"] if l["op"] != "InputQuant")  # the input has no constants
    assert backend.upper() in (firmware / "qnn_backend.h").read_text()
    assert (out_dir / "bridge" / "qnn_top_bridge.cpp").is_file()
    assert (out_dir / "model.hw.onnx").is_file()
    for name in ["tb_input_codes.dat", "tb_output_codes.dat", "tb_input_features.dat", "tb_output_predictions.dat"]:
        assert len((out_dir / "tb_data" / name).read_text().splitlines()) == 100, name
    for listed in metadata["files"]:
        assert (out_dir / listed).is_file(), listed
    if (out_dir / "build_prj.tcl").exists():
        assert "qnn_top" in (out_dir / "build_prj.tcl").read_text()
    # nothing beside the project (the staging directory is gone)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["prj"]
    # the summary: lowering report, project, backend, io, layers with reuse, files, the vendor command
    assert "lowering" in out and "MatMul_0: 16x64" in out
    assert f"wrote {out_dir}" in out and f"backend {backend}" in out and f"io {io}" in out
    assert len(re.findall(r"Dense .* reuse 1\b", out)) == 4
    assert re.search(r"\d+ files: .*firmware/", out)
    if (out_dir / "README.md").exists():
        assert command in out
        assert command in (out_dir / "README.md").read_text()


def test_hls_on_the_hardware_dialect_with_reuse_config(lowered_jet, tmp_path, capsys):
    config = tmp_path / "cfg.yaml"
    config.write_text("reuse_factor: 2\nstrategy: latency\nlayers:\n  MatMul_1: {reuse_factor: 8}\n")
    out_dir = tmp_path / "prj"
    code, out, err = qonnx(["hls", lowered_jet, "-o", out_dir, "--backend", "vitis", "--config", config,
                            "--part", "xcu250-figd2104-2L-e", "--clock-ns", "3.3"], capsys)
    assert code == 0, err
    assert "lowering" not in out and "part xcu250-figd2104-2L-e" in out and "clock 3.3 ns" in out
    metadata = json.loads((out_dir / "project.json").read_text())
    dense = {layer["node"]: layer["reuse_factor"] for layer in metadata["layers"] if layer["op"] == "Dense"}
    assert dense == {"MatMul_0": 2, "MatMul_1": 8, "MatMul_2": 2, "MatMul_3": 2}
    assert "reuse_factor = 8;" in (out_dir / "firmware" / "parameters.h").read_text()
    # --reuse beats the config's default, not a layer's own entry; regenerating replaces the project
    code, out, err = qonnx(["hls", lowered_jet, "-o", out_dir, "--backend", "vitis", "--config", config,
                            "--reuse", "4"], capsys)
    assert code == 0, err
    metadata = json.loads((out_dir / "project.json").read_text())
    assert sorted(layer["reuse_factor"] for layer in metadata["layers"] if layer["op"] == "Dense") == [4, 4, 4, 8]


def test_hls_keeps_the_reuse_written_by_transform(tmp_path, capsys):
    lowered = tmp_path / "jet.hw.onnx"
    assert qonnx(["transform", JET_TAGGER, "-o", lowered, "--reuse", "3", "--check-samples", "0"], capsys)[0] == 0
    code, out, err = qonnx(["hls", lowered, "-o", tmp_path / "prj", "--backend", "catapult", "--tech", "my_lib"], capsys)
    assert code == 0, err
    metadata = json.loads((tmp_path / "prj" / "project.json").read_text())
    assert {layer["reuse_factor"] for layer in metadata["layers"] if layer["op"] == "Dense"} == {3}
    assert "technology my_lib" in out


def test_hls_tb_input_file(lowered_jet, x_npy, tmp_path, capsys):
    code, _, err = qonnx(["hls", lowered_jet, "-o", tmp_path / "prj", "--backend", "vitis", "--tb-input", x_npy], capsys)
    assert code == 0, err
    codes = np.loadtxt(tmp_path / "prj" / "tb_data" / "tb_input_codes.dat")
    assert codes.shape == (300, 16)


# --- qonnx csim --------------------------------------------------------------------------------


def test_csim_equals_run_exactly_and_caches(catapult_project, lowered_jet, x_npy, tmp_path, capsys):
    code, _, err = qonnx(["run", lowered_jet, "--input", x_npy, "-o", tmp_path / "expected.npy"], capsys)
    assert code == 0, err
    code, first, err = qonnx(["csim", catapult_project, "--input", x_npy, "-o", tmp_path / "y.npy"], capsys)
    assert code == 0, err
    assert "compiling" in first and "compiled" in first and "headers from" in first
    y, expected = np.load(tmp_path / "y.npy"), np.load(tmp_path / "expected.npy")
    assert y.shape == (300, 5) and np.array_equal(y, expected)
    assert len(np.unique(y.argmax(axis=1))) > 1  # not a constant output

    code, second, err = qonnx(["csim", catapult_project, "--input", x_npy, "-o", tmp_path / "codes.npy", "--codes"],
                              capsys)
    assert code == 0, err
    assert "cached build" in second and "compiling" not in second
    code, _, err = qonnx(["run", lowered_jet, "--input", x_npy, "-o", tmp_path / "expected_codes.npy", "--codes"], capsys)
    assert code == 0, err
    codes = np.load(tmp_path / "codes.npy")
    assert np.issubdtype(codes.dtype, np.integer)
    assert np.array_equal(codes, np.load(tmp_path / "expected_codes.npy"))


# --- qonnx verify ------------------------------------------------------------------------------


def test_verify_both_backends_both_io_styles(capsys):
    code, out, err = qonnx(["verify", JET_TAGGER, "--backend", "both", "--io", "both", "--samples", "200"], capsys)
    assert code == 0, err
    rows = re.findall(r"^(vitis|catapult)\s+(parallel|stream)\s+.*\s0 / 1000\s+0$", out, re.MULTILINE)
    assert sorted(rows) == sorted((b, io) for b in ("vitis", "catapult") for io in ("parallel", "stream"))
    assert "result: bit-exact: 4 of 4" in out


def test_verify_one_build_in_a_temporary_directory(tmp_path, monkeypatch, capsys):
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    code, out, err = qonnx(["verify", JET_TAGGER, "--backend", "catapult", "--io", "stream", "--samples", "200"], capsys)
    assert code == 0, err
    assert re.search(r"^catapult\s+stream\s+\d+\.\d s\s+[\d,]+\s+0 / 1000\s+0$", out, re.MULTILINE), out
    assert "200 random inputs U(-1, 1) (seed 0)" in out and "projects deleted" in out
    assert list(scratch.iterdir()) == []


def test_verify_reports_a_mismatch_with_exit_1(lowered_jet, tmp_path, monkeypatch, capsys):
    """No g++ here: the compiled library is replaced by the interpreter with one wrong output."""
    from hlsgen.project import CompileResult, Project
    from qonnx_ir import execute

    def fake_compile(self, progress=None):
        return CompileResult(self.path / "build" / "fake.so", 0.0, True, "nowhere")

    def wrong_codes(self, input_codes):
        codes = np.asarray(execute(self.model, self._x, codes=True)).copy()
        codes[0, 0] += 1
        return codes

    original_predict = Project.predict

    def predict(self, x, *, codes=False):
        self._x = x
        return original_predict(self, x, codes=codes)

    monkeypatch.setattr(Project, "compile", fake_compile)
    monkeypatch.setattr(Project, "predict_codes", wrong_codes)
    monkeypatch.setattr(Project, "predict", predict)
    code, out, err = qonnx(["verify", lowered_jet, "--backend", "vitis", "--io", "parallel", "--samples", "20",
                            "-o", tmp_path / "kept"], capsys)
    assert code == 1
    assert re.search(r"^vitis\s+parallel\s+cached\s+\S+\s+1 / 100\s+\S+$", out, re.MULTILINE), out
    assert "NOT bit-exact: 0 of 1" in out and "projects kept in" in out
    assert err.strip() == "qonnx verify: check failed: 1 of 1 builds differ from the interpreter: vitis/parallel"
    assert (tmp_path / "kept" / "vitis_parallel" / "project.json").is_file()


# --- names from the model file are untrusted ---------------------------------------------------


@pytest.fixture(scope="module")
def hostile_models(lowered_jet, work) -> tuple[Path, Path]:
    from qonnx_ir import load, save

    model = load(lowered_jet)
    for index, name in zip((1, 2, 3), ("a b", "1st", "namespace")):
        model.graph.node[index].name = name
    hostile = save(model, work / "hostile" / "hostile.hw.onnx")
    model.graph.node[4].name = "../x"
    traversal = save(model, work / "traversal" / "traversal.hw.onnx")
    return hostile, traversal


def test_path_traversal_in_a_node_name_is_refused(hostile_models, capsys):
    _, traversal = hostile_models
    before = tree(traversal.parent.parent)
    out_dir = traversal.parent / "prj"
    code, _, err = qonnx(["hls", traversal, "-o", out_dir, "--backend", "vitis"], capsys)
    assert code == 2
    assert "../x" in one_line_error(err, "hls")
    assert tree(traversal.parent.parent) == before


def declared_identifiers(project: Path) -> set[str]:
    found = set()
    for source in list(project.glob("firmware/*.[ch]*")) + list(project.glob("firmware/weights/*.h")) \
            + list(project.glob("bridge/*.cpp")):
        text = source.read_text()
        found |= set(re.findall(r"\bstruct\s+(\S+)\s*\{", text))
        found |= set(re.findall(r"\bstatic const [^=;(]*?\s(\S+)\[", text))
        found |= set(re.findall(r"^void\s+(\S+)\(", text, re.MULTILINE))
        found |= set(re.findall(r"\b(l\d+\S*?_out)\[", text))
    return found


def test_hostile_node_names_become_valid_identifiers_and_stay_exact(hostile_models, capsys):
    hostile, _ = hostile_models
    root = hostile.parent
    out_dir = root / "out"
    code, out, err = qonnx(["verify", hostile, "--backend", "catapult", "--io", "parallel", "--samples", "100",
                            "-o", out_dir], capsys)
    assert code == 0, err
    assert "result: bit-exact: 1 of 1" in out
    code, _, err = qonnx(["hls", hostile, "-o", out_dir / "top", "--backend", "vitis", "--io", "stream",
                          "--top", "namespace"], capsys)
    assert code == 0, err
    for project in (out_dir / "catapult_parallel", out_dir / "top"):
        metadata = json.loads((project / "project.json").read_text())
        identifiers = {layer["ident"] for layer in metadata["layers"]} | {metadata["top"]}
        identifiers |= declared_identifiers(project)
        assert {"l1_a_b", "l2_1st", "l3_namespace"} <= identifiers
        for name in identifiers:
            assert IDENTIFIER.fullmatch(name) and name not in CPP_KEYWORDS, name
        for file in project.rglob("*"):
            assert IDENTIFIER.fullmatch(file.name.split(".")[0]), file.name
    assert json.loads((out_dir / "top" / "project.json").read_text())["top"] == "namespace_top"
    # every file written is inside the output directory
    outside = [p for p in root.rglob("*") if p != hostile and not p.is_relative_to(out_dir)]
    assert outside == []
    for file in out_dir.rglob("*"):
        assert file.resolve().is_relative_to(out_dir.resolve())


# --- bad input: exit 2, one line, nothing written ----------------------------------------------


BAD_HLS = {
    "missing model": (["hls", "{missing}", "-o", "{out}", "--backend", "vitis"], "no such file"),
    "reuse 0": (["hls", "{jet}", "-o", "{out}", "--backend", "vitis", "--reuse", "0"], "--reuse"),
    "reuse too large": (["hls", "{jet}", "-o", "{out}", "--backend", "vitis", "--config", "{config_big}"],
                        "node 'MatMul_3': reuse_factor 1000 exceeds the 160 products of the layer"),
    "backend foo": (["hls", "{jet}", "-o", "{out}", "--backend", "foo"], "'foo'"),
    "io foo": (["hls", "{jet}", "-o", "{out}", "--backend", "vitis", "--io", "foo"], "'foo'"),
    "tech with vitis": (["hls", "{jet}", "-o", "{out}", "--backend", "vitis", "--tech", "nangate-45nm_beh"], "--tech"),
    "part and tech": (["hls", "{jet}", "-o", "{out}", "--backend", "catapult", "--part", "xcvu13p-flga2577-2-e",
                       "--tech", "nangate-45nm_beh"], "--part"),
    "unknown part": (["hls", "{jet}", "-o", "{out}", "--backend", "catapult", "--part", "foo"], "'foo'"),
    "clock 0": (["hls", "{jet}", "-o", "{out}", "--backend", "vitis", "--clock-ns", "0"], "--clock-ns"),
    "bad input type": (["hls", "{jet}", "-o", "{out}", "--backend", "vitis", "--input-type", "fixed<0,0>"], "--input-type"),
    "config unknown layer": (["hls", "{jet}", "-o", "{out}", "--backend", "vitis", "--config", "{config}"],
                             "'no_such_layer'"),
    "config unknown key": (["hls", "{jet}", "-o", "{out}", "--backend", "vitis", "--config", "{config_key}"],
                           "reuse_factr"),
    "config reuse 0": (["hls", "{jet}", "-o", "{out}", "--backend", "vitis", "--config", "{config_zero}"],
                       "layers.MatMul_0.reuse_factor = 0 is below 1"),
    "config not yaml": (["hls", "{jet}", "-o", "{out}", "--backend", "vitis", "--config", "{config_broken}"],
                        "not valid YAML"),
    "missing config": (["hls", "{jet}", "-o", "{out}", "--backend", "vitis", "--config", "{missing}"],
                       "no such file"),
    "tb input features": (["hls", "{jet}", "-o", "{out}", "--backend", "vitis", "--tb-input", "{x12}"],
                          "12 values per sample"),
    "output is a file": (["hls", "{jet}", "-o", "{config}", "--backend", "vitis"], "not a directory"),
    "csim not a project": (["csim", "{root}", "--input", "{x16}", "-o", "{out}/y.npy"], "not a project written by hawq2hls"),
    "csim missing dir": (["csim", "{missing}", "--input", "{x16}", "-o", "{out}/y.npy"],
                         "not a project written by hawq2hls"),
    "csim wrong features": (["csim", "{project}", "--input", "{x12}", "-o", "{out}/y.npy"], "12 values per sample"),
    "csim not npy": (["csim", "{project}", "--input", "{config}", "-o", "{out}/y.npy"], "not a .npy"),
    "verify samples 0": (["verify", "{jet}", "--samples", "0", "-o", "{out}"], "--samples"),
    "verify backend foo": (["verify", "{jet}", "--backend", "foo", "-o", "{out}"], "'foo'"),
    "verify wrong features": (["verify", "{jet}", "--input", "{x12}", "-o", "{out}"], "12 values per sample"),
}


@pytest.mark.parametrize("case", list(BAD_HLS))
def test_bad_input_exits_2_with_one_line_and_writes_nothing(case, catapult_project, tmp_path, capsys):
    argv, fragment = BAD_HLS[case]
    (tmp_path / "cfg.yaml").write_text("layers:\n  no_such_layer: {reuse_factor: 2}\n")
    (tmp_path / "key.yaml").write_text("reuse_factr: 2\n")
    (tmp_path / "big.yaml").write_text("layers:\n  MatMul_3: {reuse_factor: 1000}\n")
    (tmp_path / "zero.yaml").write_text("layers:\n  MatMul_0: {reuse_factor: 0}\n")
    (tmp_path / "broken.yaml").write_text("layers: [a\n")
    np.save(tmp_path / "x12.npy", np.zeros((4, 12)))
    np.save(tmp_path / "x16.npy", np.zeros((4, 16)))
    before = tree(tmp_path)
    project_before = tree(catapult_project)
    values = {"missing": tmp_path / "missing.onnx", "out": tmp_path / "out", "jet": JET_TAGGER,
              "config": tmp_path / "cfg.yaml", "config_key": tmp_path / "key.yaml", "config_zero": tmp_path / "zero.yaml",
              "config_big": tmp_path / "big.yaml",
              "config_broken": tmp_path / "broken.yaml", "x12": tmp_path / "x12.npy", "x16": tmp_path / "x16.npy",
              "root": tmp_path, "project": catapult_project}
    code, _, err = qonnx([a.format(**{k: str(v) for k, v in values.items()}) for a in argv], capsys)
    assert code == 2, err
    assert fragment in one_line_error(err, argv[0])
    assert tree(tmp_path) == before
    assert tree(catapult_project) == project_before


def test_hls_refuses_to_overwrite_a_directory_that_is_not_a_project(tmp_path, capsys):
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "thesis.tex").write_text("do not delete")
    code, _, err = qonnx(["hls", JET_TAGGER, "-o", precious, "--backend", "vitis"], capsys)
    assert code == 2
    assert "not a project written by hawq2hls" in one_line_error(err, "hls")
    assert tree(tmp_path) == {Path("precious"), Path("precious/thesis.tex")}
