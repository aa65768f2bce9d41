"""`generate` writes a complete HLS project; `Project` compiles and runs its C simulation.

A project is written to a temporary directory beside the target and renamed into place
when complete, so a failure never leaves half a project.
"""

from __future__ import annotations

import ctypes
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from qonnx_ir import hw
from qonnx_ir.errors import QonnxError
from qonnx_ir.files import usual_mode, write_text_atomically
from qonnx_ir.interpreter import KERNELS, execute
from qonnx_ir.model import load, save

from .backends import ProjectSpec, backend as get_backend
from .firmware import build_layers
from .headers import find_headers
from .names import top_name
from .top import bridge_cpp, parameters_h, top_cpp, top_h, weights_h

IO_STYLES = ("parallel", "stream")
COMPILER = ["g++", "-std=c++17", "-O2", "-fPIC", "-shared", "-DQNN_PLAIN_CXX", "-Wall", "-Wextra"]


STRATEGIES = ("latency", "resource")


def _layer_rule(default: int, config: dict | None):
    """node name -> (reuse factor, strategy), from the YAML config's global and per-layer keys."""
    layers = (config or {}).get("layers", {}) or {}
    default = int((config or {}).get("reuse_factor", default))
    default_strategy = str((config or {}).get("strategy", "latency")).lower()

    def settings_for(node_name: str) -> tuple[int, str]:
        layer = layers.get(node_name, {}) or {}
        strategy = str(layer.get("strategy", default_strategy)).lower()
        if strategy not in STRATEGIES:
            raise QonnxError(f"strategy {strategy!r} is not one of {', '.join(STRATEGIES)}", node=node_name)
        return int(layer.get("reuse_factor", default)), strategy

    return settings_for


def generate(model, outdir, *, backend: str = "vitis", io: str = "parallel", reuse: int = 1, config: dict | None = None,
             part: str | None = None, tech: str | None = None, clock_ns: float = 5.0, top: str = "qnn_top",
             tb_inputs: np.ndarray | None = None, tb_samples: int = 100) -> Project:
    """Write the project for a hardware-dialect model into outdir and return it (not compiled yet)."""
    chosen = get_backend(backend)
    if io not in IO_STYLES:
        raise QonnxError(f"unknown io style {io!r} (choose parallel or stream)")
    if clock_ns <= 0:
        raise QonnxError("--clock-ns must be positive")
    model = load(model)
    top = top_name(top)
    input_type, layers = build_layers(model, _layer_rule(reuse, config))
    output_type = hw.out_tensor(model.graph.node[-1]).type
    source = "model.hw.onnx"
    outdir = Path(outdir)
    if outdir.exists() and not outdir.is_dir():
        raise QonnxError(f"{outdir} is a file: choose a directory for -o")
    if outdir.exists() and not (outdir / "project.json").is_file() and any(outdir.iterdir()):
        raise QonnxError(f"{outdir} exists and is not a generated project: choose another -o")
    created = next((p for p in [*reversed(outdir.parents)] if not p.exists()), None)  # removed again on failure
    outdir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{outdir.name}.", dir=outdir.parent))
    try:
        firmware = staging / "firmware"
        (firmware / "weights").mkdir(parents=True)
        shutil.copytree(Path(str(resources.files("hlsgen"))) / "include" / "qnn", firmware / "qnn")
        (firmware / "qnn_backend.h").write_text(f"// Selects the {chosen.name} spelling of qnn/portability.h.\n#define {chosen.define}\n")
        (firmware / "parameters.h").write_text(parameters_h(chosen, input_type, output_type, layers, source))
        (firmware / f"{top}.h").write_text(top_h(top, io, source))
        (firmware / f"{top}.cpp").write_text(top_cpp(top, io, layers, source))
        for layer in layers:
            (firmware / "weights" / f"{layer.ident}.h").write_text(weights_h(layer, source))
        (staging / "bridge").mkdir()
        (staging / "bridge" / f"{top}_bridge.cpp").write_text(bridge_cpp(top, io, source))
        save(model, staging / source)
        samples = _write_tb_data(model, staging / "tb_data", tb_inputs, tb_samples)
        firmware_files = sorted(str(p.relative_to(staging)) for p in firmware.rglob("*") if p.is_file())
        spec = ProjectSpec(top, io, layers[0].n_in, layers[-1].n_out, input_type, output_type, clock_ns, part, tech,
                           firmware_files, layers, samples)
        vendor_files = chosen.write_vendor_files(spec, staging)
        metadata = {
            "top": top, "backend": chosen.name, "io": io, "n_in": spec.n_in, "n_out": spec.n_out,
            "input_type": str(input_type), "output_type": str(output_type), "clock_ns": clock_ns,
            "part": part, "tech": tech, "reuse": {layer.ident: layer.reuse_factor for layer in layers},
            "strategy": {layer.ident: layer.strategy for layer in layers if layer.op == "Dense"},
            "layers": [{"ident": l.ident, "node": l.node_name, "op": l.op, "kernel": l.kernel} for l in layers],
            "files": firmware_files + [f"bridge/{top}_bridge.cpp"] + vendor_files,
        }
        (staging / "project.json").write_text(json.dumps(metadata, indent=2) + "\n")
        staging.chmod(usual_mode(directory=True))  # mkdtemp makes it private
        if outdir.exists():
            if (outdir / "build").is_dir():  # keep compiled libraries: the cache is keyed by content
                (outdir / "build").rename(staging / "build")
            shutil.rmtree(outdir)
        staging.rename(outdir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        if created is not None:
            shutil.rmtree(created, ignore_errors=True)
        raise
    return Project(outdir)


def _write_tb_data(model, directory: Path, inputs, samples: int) -> int:
    """Inputs and expected outputs as integer codes (exact), and as real values for people."""
    directory.mkdir()
    first = model.graph.node[0]
    if inputs is None:
        shape = hw.attribute(first, "in_shape", [])
        inputs = np.random.default_rng(0).uniform(-1, 1, (samples, *shape))
    inputs = np.asarray(inputs)
    in_codes = np.asarray(KERNELS["InputQuant"](first, [inputs], model)).astype(np.int64)
    out_codes = np.asarray(execute(model, inputs, codes=True)).astype(np.int64)
    np.savetxt(directory / "tb_input_codes.dat", in_codes, fmt="%d")
    np.savetxt(directory / "tb_output_codes.dat", out_codes.reshape(len(inputs), -1), fmt="%d")
    np.savetxt(directory / "tb_input_features.dat", inputs.reshape(len(inputs), -1), fmt="%.17g")
    np.savetxt(directory / "tb_output_predictions.dat", execute(model, inputs).reshape(len(inputs), -1), fmt="%.17g")
    return len(inputs)


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
        metadata = self.path / "project.json"
        if not metadata.is_file():
            raise QonnxError(f"{self.path} is not a generated project (no project.json): run qonnx hls first")
        self.metadata = json.loads(metadata.read_text())
        self.top = self.metadata["top"]
        self._library = None
        self._model = None
        self.last_compile: CompileResult | None = None

    @property
    def model(self):
        if self._model is None:
            self._model = load(self.path / "model.hw.onnx")
        return self._model

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
        library = self.path / "build" / f"lib{self.top}_{digest.hexdigest()[:16]}.so"
        if library.is_file():
            self.last_compile = CompileResult(library, 0.0, True, headers.origin)
            return self.last_compile
        library.parent.mkdir(exist_ok=True)
        if progress:
            progress(f"compiling {self.path.name} with g++ (headers from {headers.origin}) ...")
        if shutil.which(COMPILER[0]) is None:
            raise QonnxError(f"{COMPILER[0]} not found: install a C++17 compiler to run the C simulation")
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
        """Run integer input codes (N, n_in) through the compiled C++; returns output codes (N, n_out)."""
        codes = np.ascontiguousarray(np.asarray(input_codes, dtype=np.int64).reshape(-1, self.metadata["n_in"]))
        out = np.zeros((len(codes), self.metadata["n_out"]), dtype=np.int64)
        pointer = ctypes.POINTER(ctypes.c_longlong)
        self._function()(codes.ctypes.data_as(pointer), out.ctypes.data_as(pointer), len(codes))
        return out

    def predict(self, x: np.ndarray, *, codes: bool = False) -> np.ndarray:
        """Like qonnx_ir.execute on the project's model, but computed by the generated C++."""
        x = np.asarray(x)
        if x.ndim == 1:
            x = x[None, :]
        first, last = self.model.graph.node[0], self.model.graph.node[-1]
        out = self.predict_codes(KERNELS["InputQuant"](first, [x], self.model))
        return out if codes else out * hw.out_tensor(last).real_scale
