"""`generate` writes a complete HLS project; `Project` compiles and runs its C simulation.

A project is written to a temporary directory beside the target and renamed into place when
complete, so a failure never leaves half a project. The target must be new, an empty
directory, or a project hawq2hls wrote before: then only the files its `project.json` lists
are replaced, everything else in it (vendor tool runs, the user's own files) is kept, and a
file of the user's inside one of the project's own folders makes it refuse. Nothing is ever
followed through a symbolic link.
"""

from __future__ import annotations

import ctypes
import fcntl
import hashlib
import json
import math
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from qonnx_ir.dialect import HwGraph
from qonnx_ir.dialect.knobs import IO_STYLES, Knobs, apply_knobs
from qonnx_ir.errors import QonnxError
from qonnx_ir.files import usual_mode, writable_ancestor, write_text_atomically
from qonnx_ir.interpreter import by_output, execute
from qonnx_ir.model import load, save

from .backends import ProjectSpec, backend as get_backend
from .firmware import Design, build_design
from .headers import find_headers
from .names import top_name
from .top import bridge_cpp, parameters_h, top_cpp, top_h, weights_h

COMPILER = ["g++", "-std=c++14", "-O2", "-fPIC", "-shared", "-DQNN_PLAIN_CXX", "-Wall", "-Wextra"]
GENERATOR = "hawq2hls"
SOURCE = "model.hw.onnx"
# Top-level entries a project owns; `build/` is the C simulation's cache and survives regeneration.
OWNED = ("firmware", "bridge", "tb", "tb_data", SOURCE, "project.json", "build_prj.tcl", "run_csim.sh", "README.md")
CACHE = "build"


def generate(model, outdir, *, backend: str = "vitis", io: str | None = None, reuse: int | None = None,
             strategy: str | None = None, config: dict | None = None, part: str | None = None,
             tech: str | None = None, clock_ns: float = 5.0, top: str = "qnn_top",
             tb_inputs: np.ndarray | None = None, tb_samples: int = 100, source: str = "config") -> Project:
    """Write the project for a hardware-dialect model into outdir and return it (not compiled yet).

    Knobs (io, reuse, strategy, a config mapping as in `--config`) are resolved into the model
    first (`qonnx_ir.dialect.knobs`): the same knobs give the same project from the API, the
    CLI or a config file, and a model that already carries knobs keeps them unless told otherwise.
    """
    chosen = get_backend(backend)
    if not math.isfinite(clock_ns) or clock_ns <= 0:
        raise QonnxError(f"--clock-ns must be a positive number of nanoseconds (got {clock_ns:g})")
    if tb_samples < 1:
        raise QonnxError("--tb-samples must be >= 1")
    model = load(model)
    apply_knobs(model, Knobs.from_config(config, source).override(reuse_factor=reuse, strategy=strategy, io=io))
    graph = HwGraph(model)
    design = build_design(graph, chosen)
    top = top_name(top)
    outdir = Path(outdir)
    previous = check_project_directory(outdir)
    writable_ancestor(outdir)
    created = next((p for p in [*reversed(outdir.parents)] if not p.exists()), None)  # removed again on failure
    outdir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{outdir.name}.", dir=outdir.parent))
    try:
        _write_project(staging, model, graph, design, chosen, top, part, tech, clock_ns, tb_inputs, tb_samples)
        staging.chmod(usual_mode(directory=True))  # mkdtemp makes it private
        _install(staging, outdir, previous)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        if created is not None:
            shutil.rmtree(created, ignore_errors=True)
        raise
    return Project(outdir)


def _write_project(staging: Path, model, graph: HwGraph, design: Design, chosen, top, part, tech, clock_ns,
                   tb_inputs, tb_samples) -> None:
    firmware = staging / "firmware"
    (firmware / "weights").mkdir(parents=True)
    (firmware / "qnn").mkdir()
    # the whole library (its headers include one another), and the header of a kernel kept elsewhere
    headers = set((Path(__file__).parent / "include" / "qnn").glob("*.h")) | {layer.header for layer in design.layers}
    for header in sorted(headers):
        shutil.copyfile(header, firmware / "qnn" / header.name)
    (firmware / "qnn_backend.h").write_text(f"// Selects the {chosen.name} spelling of qnn/portability.h.\n"
                                            f"#define {chosen.define}\n")
    (firmware / "parameters.h").write_text(parameters_h(chosen, design, SOURCE))
    (firmware / f"{top}.h").write_text(top_h(top, design, SOURCE))
    (firmware / f"{top}.cpp").write_text(top_cpp(top, design, SOURCE))
    for layer in design.layers:
        if layer.arrays:
            (firmware / "weights" / f"{layer.ident}.h").write_text(weights_h(layer, SOURCE))
    (staging / "bridge").mkdir()
    (staging / "bridge" / f"{top}_bridge.cpp").write_text(bridge_cpp(top, design, SOURCE))
    save(model, staging / SOURCE)
    samples = _write_tb_data(graph, staging / "tb_data", tb_inputs, tb_samples)
    firmware_files = sorted(str(p.relative_to(staging)) for p in firmware.rglob("*") if p.is_file())
    spec = ProjectSpec(top, design.io, design.n_in, design.n_out, design.input_type,
                       design.output_type(design.ports[0]), clock_ns, part, tech, firmware_files, design, samples)
    vendor_files = chosen.write_vendor_files(spec, staging)
    files = sorted({*firmware_files, f"bridge/{top}_bridge.cpp", SOURCE, *vendor_files,
                    *(str(p.relative_to(staging)) for p in (staging / "tb_data").iterdir())})
    metadata = {
        "generator": GENERATOR, "top": top, "backend": chosen.name, "io": design.io,
        "n_in": design.n_in, "n_out": design.n_out, "input_type": str(design.input_type),
        **_outputs_metadata(design), "clock_ns": clock_ns, "part": part, "tech": tech,
        "interval": design.interval, "latency": design.latency,
        "layers": [{"ident": l.ident, "node": l.node, "op": l.op, "kernel": l.kernel, "ii": l.cost.ii,
                    "latency": l.cost.latency, "tokens": l.tokens, **l.knobs} for l in design.layers],
        "files": files + ["project.json"],
    }
    (staging / "project.json").write_text(json.dumps(metadata, indent=2) + "\n")


def _outputs_metadata(design: Design) -> dict:
    """project.json's output fields: the output type of the one port, or every port in order."""
    if len(design.ports) == 1:
        return {"output_type": str(design.output_type(design.ports[0]))}
    return {"outputs": [{"port": port.name, "tensor": port.edge, "n": port.size, "offset": port.offset,
                         "shape": list(design.graph.edge(port.edge).shape), "type": str(design.output_type(port)),
                         "tokens": port.tokens} for port in design.ports]}


def _write_tb_data(graph: HwGraph, directory: Path, inputs, samples: int) -> int:
    """Inputs and expected outputs as integer codes (exact), and as real values for people.

    An output line holds what the output ports carry, port after port: channels last, as the
    hardware streams it (the inputs' real values stay in the user's layout, as given)."""
    directory.mkdir()
    first = graph.nodes[0]
    if inputs is None:
        inputs = np.random.default_rng(0).uniform(-1, 1, (samples, *first.input_shape))
    inputs = np.asarray(inputs)
    in_codes = np.asarray(first.evaluate([inputs])[0]).astype(np.int64).reshape(len(inputs), -1)
    out_codes = _port_order(graph, execute(graph, inputs, codes=True), len(inputs)).astype(np.int64)
    np.savetxt(directory / "tb_input_codes.dat", in_codes, fmt="%d")
    np.savetxt(directory / "tb_output_codes.dat", out_codes, fmt="%d")
    np.savetxt(directory / "tb_input_features.dat", inputs.reshape(len(inputs), -1), fmt="%.17g")
    np.savetxt(directory / "tb_output_predictions.dat", _port_order(graph, execute(graph, inputs), len(inputs)),
               fmt="%.17g")
    return len(inputs)


def _port_order(graph: HwGraph, result, samples: int) -> np.ndarray:
    """execute's result as (samples, N_OUT): every output channels last, one after the other."""
    outputs = by_output(graph, result)
    return np.concatenate([np.asarray(graph.to_edge_layout(name, outputs[name])).reshape(samples, -1)
                           for name in graph.outputs], axis=1)


# -- the output directory ---------------------------------------------------------------------


def check_project_directory(outdir: Path) -> list[str] | None:
    """None for a new or empty directory; the files of a previous project otherwise (checked:
    every one a regular file inside it). QonnxError for anything else."""
    if outdir.is_symlink():
        raise QonnxError(f"{outdir} is a symbolic link: give the project directory itself")
    if not outdir.exists():
        return None
    if not outdir.is_dir():
        raise QonnxError(f"{outdir} exists and is not a directory: choose another -o")
    if not any(outdir.iterdir()):
        return None
    files = _previous_files(outdir)
    if files is None:
        raise QonnxError(f"{outdir} exists and is not a project written by hawq2hls: choose another -o "
                         "(or an empty directory)")
    for path in sorted(outdir.rglob("*")):
        relative = path.relative_to(outdir)
        if relative.parts[0] in OWNED and relative.parts[0] != "project.json":
            if path.is_symlink() or (not path.is_dir() and str(relative) not in files):
                raise QonnxError(f"{path} was not written by hawq2hls: move it out of {outdir} before regenerating "
                                 "(or choose another -o)")
    return files


def _previous_files(outdir: Path) -> list[str] | None:
    metadata = outdir / "project.json"
    if metadata.is_symlink() or not metadata.is_file():
        return None
    try:
        content = json.loads(metadata.read_text())
    except (ValueError, UnicodeDecodeError, OSError):
        return None
    # projects written before the "generator" key existed carry top and backend
    if not isinstance(content, dict) or content.get("generator", GENERATOR) != GENERATOR or \
            not {"top", "backend", "files"} <= set(content):
        return None
    files = content.get("files")
    if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
        return None
    for name in files:
        path = outdir / name
        if Path(name).is_absolute() or ".." in Path(name).parts or Path(name).parts[:1] not in [(o,) for o in OWNED]:
            return None
        if os.path.lexists(path) and (path.is_symlink() or not path.is_file()):
            return None
    return files


def _install(staging: Path, outdir: Path, previous: list[str] | None) -> None:
    """Rename the finished staging directory into place. A previous project's own entries are
    deleted; its cache and anything else it holds move into the new project."""
    if previous is None:
        staging.rename(outdir)  # a new name, or an empty directory
        return
    backup = Path(tempfile.mkdtemp(prefix=f".{outdir.name}.old.", dir=outdir.parent))
    backup.rmdir()
    outdir.rename(backup)
    try:
        staging.rename(outdir)
    except BaseException:
        backup.rename(outdir)
        raise
    for entry in backup.iterdir():
        if entry.name not in OWNED:  # build/ (the cache), vendor tool runs, the user's files
            entry.rename(outdir / entry.name)
    shutil.rmtree(backup)


# -- the C simulation -------------------------------------------------------------------------

VENDOR_INCLUDES = {
    "vitis": ["ap_int.h", "ap_fixed.h", "hls_stream.h"],
    "catapult": ["ac_int.h", "ac_fixed.h", "ac_channel.h"],
}


def cache_directory() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "hawq2hls"


def precompiled_vendor_headers(backend: str, vendor_flags: list[str]) -> list[str]:
    """Flags that force-include a precompiled header of the vendor types (built once per machine).

    Parsing ap_int.h & co. is half of every compile; a g++ precompiled header made with the
    same flags removes it. If g++ cannot build one, compiles simply go without.
    """
    content = "".join(f"#include <{name}>\n" for name in VENDOR_INCLUDES[backend])
    key = hashlib.sha256((" ".join(COMPILER + vendor_flags) + content).encode()).hexdigest()[:16]
    directory = cache_directory() / f"pch-{backend}-{key}"
    header = directory / "qnn_vendor.h"
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / ".lock", "w") as lock:  # one builder at a time, across threads and processes
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (directory / "qnn_vendor.h.gch").is_file():
            write_text_atomically(header, content)
            handle, partial = tempfile.mkstemp(prefix=".qnn_vendor.", suffix=".gch", dir=directory)
            os.close(handle)
            command = [c for c in COMPILER if c != "-shared"] + vendor_flags + ["-x", "c++-header", str(header), "-o", partial]
            if subprocess.run(command, capture_output=True).returncode != 0:
                os.unlink(partial)
                return []
            os.replace(partial, directory / "qnn_vendor.h.gch")
    return ["-include", str(header)]


@dataclass
class CompileResult:
    library: Path
    seconds: float
    cached: bool
    headers: str


class Project:
    """A generated project directory: compile its C++ with g++ and run it from Python."""

    def __init__(self, path):
        self.path = Path(path)
        if _previous_files(self.path) is None:
            raise QonnxError(f"{self.path} is not a project written by hawq2hls (no valid project.json): "
                             "run qonnx hls first")
        self.metadata = json.loads((self.path / "project.json").read_text())
        self.top = self.metadata["top"]
        self._library = None
        self._graph = None
        self.last_compile: CompileResult | None = None

    @property
    def graph(self) -> HwGraph:
        if self._graph is None:
            self._graph = HwGraph(load(self.path / SOURCE))
        return self._graph

    @property
    def model(self):
        return self.graph.model

    def sources(self) -> list[Path]:
        return [self.path / "bridge" / f"{self.top}_bridge.cpp"]  # it includes the firmware

    def compile(self, progress=None) -> CompileResult:
        """Build the shared library with g++; an unchanged project (same content hash) is not rebuilt."""
        headers = find_headers(self.metadata["backend"])
        vendor = [f"-isystem{d}" for d in headers.directories]
        flags = COMPILER + vendor + precompiled_vendor_headers(self.metadata["backend"], vendor) + [
            f"-I{self.path / 'firmware'}"]
        digest = hashlib.sha256(" ".join(COMPILER).encode())
        for file in sorted((self.path / "firmware").rglob("*")) + sorted((self.path / "bridge").rglob("*")):
            if file.is_file():
                digest.update(str(file.relative_to(self.path)).encode())
                digest.update(file.read_bytes())
        for directory in headers.directories:
            digest.update(str(directory).encode())
        library = self.path / CACHE / f"lib{self.top}_{digest.hexdigest()[:16]}.so"
        if library.is_file():
            self.last_compile = CompileResult(library, 0.0, True, headers.origin)
            return self.last_compile
        library.parent.mkdir(exist_ok=True)
        if progress:
            progress(f"compiling {self.path.name} with g++ (headers from {headers.origin}) ...")
        if shutil.which(COMPILER[0]) is None:
            raise QonnxError(f"{COMPILER[0]} not found: install a C++14 compiler to run the C simulation")
        start = time.perf_counter()
        handle, partial_name = tempfile.mkstemp(prefix=f".{library.name}.", suffix=".partial", dir=library.parent)
        os.close(handle)
        partial = Path(partial_name)
        command = flags + [str(s) for s in self.sources()] + ["-o", str(partial)]
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            partial.unlink(missing_ok=True)
            first = next((line for line in result.stderr.splitlines() if "error" in line), result.stderr.strip()[:300])
            raise QonnxError(f"g++ failed on {self.path}: {first}")
        os.replace(partial, library)
        self.last_compile = CompileResult(library, time.perf_counter() - start, False, headers.origin)
        self.compiler_warnings = result.stderr
        return self.last_compile

    def _function(self):
        if self._library is None:
            compiled = self.last_compile or self.compile()
            library = ctypes.CDLL(str(compiled.library))
            function = library.qnn_predict
            function.argtypes = [ctypes.POINTER(ctypes.c_longlong), ctypes.POINTER(ctypes.c_longlong), ctypes.c_longlong]
            function.restype = ctypes.c_longlong
            self._library = function
        return self._library

    def predict_codes(self, input_codes: np.ndarray) -> np.ndarray:
        """Run input codes (N, n_in; channels last) through the compiled C++; returns output codes (N, n_out):
        with several outputs, every port's codes (channels last) one after the other."""
        codes = np.ascontiguousarray(np.asarray(input_codes, dtype=np.int64).reshape(-1, self.metadata["n_in"]))
        out = np.zeros((len(codes), self.metadata["n_out"]), dtype=np.int64)
        pointer = ctypes.POINTER(ctypes.c_longlong)
        self._function()(codes.ctypes.data_as(pointer), out.ctypes.data_as(pointer), len(codes))
        return out

    def predict(self, x: np.ndarray, *, codes: bool = False):
        """Like qonnx_ir.execute on the project's model, but computed by the generated C++: the real
        values (or codes) of the output, or a dict {graph output name: values} when it has several."""
        graph = self.graph
        x = np.asarray(x)
        if x.ndim == 1:
            x = x[None, :]
        input_codes = graph.nodes[0].evaluate([x])[0]
        out = self.predict_codes(input_codes)
        results, offset = {}, 0
        for output in graph.outputs:
            edge = graph.edge(output)
            part = out[:, offset:offset + edge.size].reshape(len(x), *edge.shape)
            offset += edge.size
            results[output] = graph.to_user_layout(output, part if codes else part * edge.real_scale)
        return results[graph.outputs[0]] if len(graph.outputs) == 1 else results


__all__ = ["COMPILER", "IO_STYLES", "CompileResult", "Project", "generate"]
