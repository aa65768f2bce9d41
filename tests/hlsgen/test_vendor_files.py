"""The vendor files of a generated project: build_prj.tcl, the testbench, README.md.

No vendor tool runs here, so the tcl is checked for the commands Vitis HLS / Catapult need
(read with a small Tcl word splitter), and the testbench is built with plain g++ against the
open-source ap_types / ac_types headers and run on the project's tb_data: it must report
0 mismatches, and exactly the one mismatch planted in the expected outputs.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from hlsgen import generate
from hlsgen.backends.catapult import Catapult
from hlsgen.backends.vitis import Vitis
from hlsgen.headers import find_headers
from paths import JET_TAGGER
from qonnx_ir import load
from qonnx_ir.errors import QonnxError
from transforms import lower

# (backend, io, part, tech, clock_ns): defaults and explicit targets, both io styles
TARGETS = [
    ("vitis", "parallel", "xcku115-flvb2104-2-i", None, 4.0),
    ("vitis", "stream", None, None, 5.0),
    ("catapult", "parallel", None, None, 10.0),
    ("catapult", "stream", "xcvu9p-flgb2104-2-e", None, 3.3),
    ("catapult", "parallel", None, "saed32rvt_tt0p78v125c_beh", 2.5),
]
COMPILED = [("vitis", "parallel"), ("vitis", "stream"), ("catapult", "parallel"), ("catapult", "stream")]
CATAPULT_FLOW = ["analyze", "compile", "libraries", "assembly", "architect", "allocate", "schedule", "dpfsm", "extract"]
WARNING = re.compile(r"^(?P<file>[^:\s][^:]*):\d+(?::\d+)?: warning: (?P<message>.*)$")


@pytest.fixture(scope="module")
def lowered():
    model, _ = lower(load(JET_TAGGER))
    return model


def _generate(model, directory: Path, backend, io, part=None, tech=None, clock_ns=5.0):
    project = generate(model, directory, backend=backend, io=io, part=part, tech=tech, clock_ns=clock_ns, tb_samples=40)
    return project, json.loads((project.path / "project.json").read_text())


def _firmware_sources(metadata) -> list[str]:
    return [f for f in metadata["files"] if f.startswith("firmware/") and f.endswith(".cpp")]


# ---- a small reader for the generated Tcl: one command per line, blocks opened by `... {` ----

def tcl_words(line: str) -> list[str]:
    """Split a Tcl command into words: {braced} and [bracketed] words nest, "quoted" words are kept whole."""
    words, i = [], 0
    while i < len(line):
        if line[i].isspace():
            i += 1
            continue
        if line[i] in "{[":
            opening, closing = line[i], "}" if line[i] == "{" else "]"
            depth, j = 0, i
            while True:
                depth += {opening: 1, closing: -1}.get(line[j], 0)
                if depth == 0:
                    break
                j += 1
            words.append(line[i + 1 : j] if opening == "{" else line[i : j + 1])
            i = j + 1
        elif line[i] == '"':
            j = line.index('"', i + 1)
            words.append(line[i + 1 : j])
            i = j + 1
        else:
            j = i
            while j < len(line) and not line[j].isspace():
                j += 1
            words.append(line[i:j])
            i = j
    return words


def tcl_commands(text: str) -> list[tuple[list[str], tuple[str, ...]]]:
    """(words, guards) for every command; guards are the `if {$switch}` blocks around it."""
    commands, blocks = [], []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line == "}":
            blocks.pop()
            continue
        if line.startswith("}") and line.endswith("{"):  # } else { / } elseif {...} {
            blocks[-1] = None
            continue
        if line.endswith("{") and line.count("{") == line.count("}") + 1:
            switch = re.fullmatch(r"if \{\$(\w+)\} \{", line)
            blocks.append(switch.group(1) if switch else None)
            continue
        commands.append((tcl_words(line), tuple(b for b in blocks if b)))
    assert not blocks, "unbalanced braces in the tcl"
    return commands


def find(commands, *prefix: str):
    """Every command whose first words are `prefix`."""
    return [(words, guards) for words, guards in commands if words[: len(prefix)] == list(prefix)]


def position(commands, *prefix: str) -> int:
    matches = [i for i, (words, _) in enumerate(commands) if words[: len(prefix)] == list(prefix)]
    assert len(matches) == 1, f"expected one {' '.join(prefix)!r}, found {len(matches)}"
    return matches[0]


def referenced_paths(commands, project: Path) -> list[Path]:
    """Every `$root/...` path in the tcl (root = the project directory)."""
    paths = []
    for words, _ in commands:
        for word in words:
            for match in re.finditer(r"\$root/([\w./-]+)", word):
                paths.append(project / match.group(1))
    return paths


# ---- (a) build_prj.tcl --------------------------------------------------------------------------

@pytest.mark.parametrize("backend,io,part,tech,clock_ns", [t for t in TARGETS if t[0] == "vitis"])
def test_vitis_tcl(lowered, tmp_path, backend, io, part, tech, clock_ns):
    project, metadata = _generate(lowered, tmp_path / "prj", backend, io, part, tech, clock_ns)
    top = metadata["top"]
    commands = tcl_commands((project.path / "build_prj.tcl").read_text())

    assert find(commands, "set_top") == [(["set_top", top], ())]
    sources = [words for words, _ in find(commands, "add_files") if words[1] != "-tb"]
    assert sorted(words[1] for words in sources) == sorted(_firmware_sources(metadata))
    assert all("-std=c++14" in words[words.index("-cflags") + 1] for words in sources)
    testbench = [words[2] for words, _ in find(commands, "add_files", "-tb")]
    assert f"tb/{top}_test.cpp" in testbench and "tb_data" in testbench
    assert "-flow_target vivado" in " ".join(find(commands, "open_solution")[0][0])
    assert find(commands, "set_part")[0][0] == ["set_part", part or Vitis.default_part]
    clock = find(commands, "create_clock")[0][0]
    assert float(clock[clock.index("-period") + 1]) == clock_ns

    # each step guarded by its switch, which is set at the top of the file
    for step, switch in [("csim_design", "csim"), ("csynth_design", "synth"), ("cosim_design", "cosim"),
                         ("export_design", "export")]:
        assert [guards for _, guards in find(commands, step)] == [(switch,)]
        assert position(commands, "set", switch) < position(commands, "open_project")
    assert find(commands, "export_design")[0][0][1:] == ["-format", "ip_catalog"]
    order = ["open_project", "set_top", "open_solution", "set_part", "create_clock", "csim_design", "csynth_design",
             "cosim_design", "export_design"]
    assert [position(commands, name) for name in order] == sorted(position(commands, name) for name in order)

    # every file the tcl names exists in the project
    added = [next(w for w in words[1:] if not w.startswith("-")) for words, _ in find(commands, "add_files")]
    for path in [project.path / a for a in added] + referenced_paths(commands, project.path):
        assert path.exists(), path


@pytest.mark.parametrize("backend,io,part,tech,clock_ns", [t for t in TARGETS if t[0] == "catapult"])
def test_catapult_tcl(lowered, tmp_path, backend, io, part, tech, clock_ns):
    project, metadata = _generate(lowered, tmp_path / "prj", backend, io, part, tech, clock_ns)
    top = metadata["top"]
    commands = tcl_commands((project.path / "build_prj.tcl").read_text())

    assert find(commands, "directive", "set", "-DESIGN_HIERARCHY")[0][0][3] == top
    added = {words[3]: words[4:] for words, _ in find(commands, "solution", "file", "add")}
    for source in _firmware_sources(metadata):
        assert f"$root/{source}" in added and "-exclude" not in added[f"$root/{source}"]
    assert added[f"$root/tb/{top}_test.cpp"][-2:] == ["-exclude", "true"]
    assert find(commands, "flow", "package", "require", "/SCVerify")
    invoke = find(commands, "solution", "options", "set", "Flows/SCVerify/INVOKE_ARGS")[0][0]
    assert invoke[-1] == "[list $root/tb_data]"

    libraries = [words[3:] for words, _ in find(commands, "solution", "library", "add")]
    if part:
        library = libraries[0]
        assert re.fullmatch(r"mgc_Xilinx-[A-Za-z0-9-]+_beh", library[0])
        assert library[library.index("-part") + 1] == part
        assert library[library.index("-rtlsyntool") + 1] == "Vivado"
    else:
        assert libraries[0][0] == (tech or Catapult.default_tech)
        assert libraries[0][libraries[0].index("-rtlsyntool") + 1] == "DesignCompiler"
    clocks = find(commands, "directive", "set", "-CLOCKS")[0][0][3]
    assert float(re.search(r"-CLOCK_PERIOD (\S+)", clocks).group(1)) == clock_ns

    steps = [words[1] for words, _ in find(commands, "go")]
    assert [s for s in steps if s in CATAPULT_FLOW] == CATAPULT_FLOW
    assert steps.index("new") < steps.index("analyze")
    assert position(commands, "directive", "set", "-DESIGN_HIERARCHY") < position(commands, "go", "compile")
    assert position(commands, "go", "libraries") > max(
        i for i, (words, _) in enumerate(commands) if words[:3] == ["solution", "library", "add"])
    assert position(commands, "directive", "set", "-CLOCKS") < position(commands, "go", "assembly")

    paths = referenced_paths(commands, project.path)
    assert project.path / "firmware" in paths
    for path in paths:
        assert path.exists(), path


# ---- (c) READMEs --------------------------------------------------------------------------------

@pytest.mark.parametrize("backend,io,part,tech,clock_ns", TARGETS)
def test_readme(lowered, tmp_path, backend, io, part, tech, clock_ns):
    project, metadata = _generate(lowered, tmp_path / "prj", backend, io, part, tech, clock_ns)
    readme = (project.path / "README.md").read_text()
    command = {"vitis": "vitis_hls -f build_prj.tcl", "catapult": "catapult -shell -f build_prj.tcl"}[backend]
    assert f"```sh\n{command}\n```" in readme
    gxx = [line for line in readme.splitlines() if line.startswith("g++ ")]
    assert len(gxx) == 1 and f"tb/{metadata['top']}_test.cpp" in gxx[0] and "-DQNN_PLAIN_CXX" in gxx[0]
    assert gxx[0] in (project.path / "run_csim.sh").read_text()  # the script runs the documented line
    for layer in metadata["layers"]:  # each layer's knobs and the II / latency its pragmas request
        knobs = rf"\| {layer['reuse_factor']} \| {layer['strategy']} \|" if "reuse_factor" in layer else r"\|  \|  \|"
        row = rf"^\| {re.escape(layer['ident'])} \| .*{knobs} \S* ?\| {layer['ii']} \| {layer['tokens']} \| {layer['latency']} \|$"
        assert re.search(row, readme, re.MULTILINE), layer['ident']
    assert f"a new sample every **{metadata['interval']}** cycle" in readme
    assert f"about **{metadata['latency']}**" in readme
    assert f"{clock_ns:g} ns" in readme
    if backend == "vitis":
        assert f"`{part or Vitis.default_part}`" in readme
    elif not part:
        assert f"`{tech or Catapult.default_tech}`" in readme


# ---- (b) the testbench, compiled with plain g++ ----------------------------------------------

def _our_warnings(stderr: str, project: Path) -> list[str]:
    """Warnings located in the project's own code (firmware/, tb/); -isystem hides the vendor headers'."""
    ours = []
    for line in stderr.splitlines():
        match = WARNING.match(line)
        if not match:
            continue
        location = (project / match.group("file")).resolve()
        if any(location.is_relative_to(project / folder) for folder in ("firmware", "tb")):
            ours.append(f"{location.relative_to(project)}{line[len(match.group('file')):]}")
    return ours


@pytest.mark.parametrize("backend,io", COMPILED)
def test_testbench_compiles_and_catches_a_mismatch(lowered, tmp_path, backend, io):
    project, metadata = _generate(lowered, tmp_path / "prj", backend, io)
    root, top = project.path.resolve(), metadata["top"]
    headers = [f"-isystem{d}" for d in find_headers(backend).directories]
    compile_line = (["g++", "-std=c++17", "-Wall", "-Wextra", "-DQNN_PLAIN_CXX", "-I", "firmware", *headers,
                     f"tb/{top}_test.cpp", *_firmware_sources(metadata), "-o", "tb_run"])
    built = subprocess.run(compile_line, cwd=root, capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, built.stderr[-4000:]

    samples = len((root / "tb_data" / "tb_input_codes.dat").read_text().splitlines())
    run = subprocess.run(["./tb_run"], cwd=root, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr
    assert run.stdout.splitlines()[-1] == f"{samples} samples, 0 mismatches"

    # plant one wrong expectation: the testbench must name it and fail
    expected = root / "tb_data" / "tb_output_codes.dat"
    rows = expected.read_text().splitlines()
    codes = rows[3].split()
    original = int(codes[2])
    codes[2] = str(original + 1)
    rows[3] = " ".join(codes)
    expected.write_text("\n".join(rows) + "\n")
    run = subprocess.run(["./tb_run"], cwd=root, capture_output=True, text=True, timeout=120)
    assert run.returncode == 1
    assert f"mismatch: sample 3, output 2: got {original}, expected {original + 1}" in run.stdout
    assert run.stdout.splitlines()[-1] == f"{samples} samples, 1 mismatches"

    # data that cannot be read is a failure too, never a silent pass
    run = subprocess.run(["./tb_run", "no_such_folder"], cwd=root, capture_output=True, text=True, timeout=120)
    assert run.returncode == 1 and "cannot open no_such_folder/tb_input_codes.dat" in run.stderr

    # last, so that a warning does not hide the results above
    assert _our_warnings(built.stderr, root) == []


# ---- bad targets: one-line errors, nothing written ------------------------------------------------

@pytest.mark.parametrize("backend,part,tech,words", [
    ("catapult", "xcvu9p-flgb2104-2-e", "nangate-45nm_beh", "not both"),
    ("catapult", "xc2v1000-4", None, "no Xilinx library known"),
    ("vitis", None, "nangate-45nm_beh", "use --part"),
])
def test_bad_target(lowered, tmp_path, backend, part, tech, words):
    with pytest.raises(QonnxError, match=words):
        _generate(lowered, tmp_path / "prj", backend, "parallel", part, tech)
    assert not any(tmp_path.iterdir())
