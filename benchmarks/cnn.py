"""CNN benchmarks: interpreter speed, C simulation next to hls4ml 1.3, and the SVHN latency estimate.

    python benchmarks/cnn.py [--section interp|csim|latency|all] [--samples N] [--repeats 3] [--no-hls4ml]

The CNNs of sections interp and csim are Brevitas models built by tests/cnn_zoo.py's make_cnn
(power-of-two quantizers everywhere, so the float64 QONNX graph is exact), exported with
brevitas export_qonnx(..., dynamo=False) as its export_cnn_file does:

- "zoo-8x8":   cnn_zoo.MATRIX[0], 1x8x8 input, two 3x3 conv blocks of 4 channels, 4-bit, max pool;
- "cnn-16x16": the same layout on 3x16x16 inputs, 8 channels, 6-bit weights and activations.

interp (section a). qonnx_ir.execute(lowered, x) after transforms.lower(qonnx_ir.load(path)),
next to qonnx's executor on the same QONNX file and batch (qonnx_ir.reference.execute_qonnx,
float32 as qonnx runs it), best of R, one batch of N samples each. Our output must equal the
float64 QONNX reference (execute_qonnx(float64=True)) on every element; the float32 executor's
max |diff| from it is shown for information.

csim (section b), on cnn-16x16, io stream, each backend. Ours: hlsgen.generate(lowered, dir,
backend=..., io="stream") into a fresh directory ("project s"), Project.compile() on that cold
project ("compile s" = CompileResult.seconds, the g++ call only; like benchmarks/csim.py, the
per-machine precompiled ap_/ac_ header in ~/.cache/hawq2hls is reused once built, and its
one-time build is not in CompileResult.seconds: the printed compile() call time includes it), then
Project.predict(x) on all N samples, best of R, checked equal to the interpreter (values and
codes). hls4ml: the QONNX file preprocessed as its QONNX docs say (benchmarks/csim.py's
_qonnx_for_hls4ml), config_from_onnx_model(granularity='name', default_precision='fixed<16,6>'),
convert_from_onnx_model(io_type='io_stream'); "project s" = write(), "compile s" = _compile()
(build_lib.sh's g++ and dlopen), predict = hls_model.predict(x) with x as (N, C, H, W): the
graph keeps its channels-first input and hls4ml transposes inside. Inputs lie on the 2**-10
grid, so hls4ml's fixed<16,6> input type holds them exactly.

latency (section c). The SVHN network of the hls4ml CNN paper (Aarrestad et al. 2021):
32x32x3 -> 3 x [Conv 3x3 (16, 16, 24 filters) -> MaxPool 2 -> BatchNorm -> ReLU] -> Dense 42 ->
Dense 64 -> Dense 10 (the hidden dense layers followed by BatchNorm -> ReLU), 7-bit weights and
activations, random weights, built in Brevitas with power-of-two quantizers; lowered (should the
paper's block order not lower, the equivalent Conv -> BatchNorm -> ReLU -> MaxPool is tried and
the output says so) and generated as a Vitis io-stream project at reuse factor 1. The cycles
printed are hlsgen's estimate from the pragmas it writes (project.json "latency"/"interval", the
README's per-layer table) -- not a synthesis result -- next to the paper's 1,035 cycles (5.2 us
at 200 MHz). The project's C++ is also compiled and checked against the interpreter on a few
samples.

Exit status 1 if any of our checks fails (our outputs exact; the README's latency table equal to
project.json). Everything is written under one temporary directory, removed at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import re
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ROOT / "benchmarks"
for path in (ROOT, BENCHMARKS):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))
if str(ROOT / "tests") not in sys.path:
    sys.path.append(str(ROOT / "tests"))  # appended: tests/transforms must not shadow the package

from csim import (  # noqa: E402  (benchmarks/csim.py: the jet tagger's C simulation benchmark)
    BACKENDS,
    _best,
    _failed,
    _hls4ml_compiled,
    _hls4ml_usable,
    _load,
    _measure_ours,
    _one_line,
    _print_failures,
    _result_cells,
    _table,
    _versus,
)

SECTIONS = ("interp", "csim", "latency")
ALIASES = {"a": "interp", "b": "csim", "c": "latency", "all": "all"}
DEFAULT_SAMPLES = {"interp": 20_000, "csim": 2_000}
INPUT_LSB = 2.0**-10  # inputs on this grid fit hls4ml's default fixed<16,6> input exactly
PAPER_CYCLES, PAPER_CLOCK_NS = 1035, 5.0
SVHN_BITS = 7
SVHN_CHECK_SAMPLES = 20


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--section", action="append", choices=sorted({*SECTIONS, *ALIASES}),
                        help="interp (a), csim (b), latency (c) or all (default); repeat to pick several")
    parser.add_argument("--samples", type=int, default=None,
                        help=f"inputs per batch (default: interp {DEFAULT_SAMPLES['interp']:,}, "
                             f"csim {DEFAULT_SAMPLES['csim']:,})")
    parser.add_argument("--repeats", type=int, default=3, help="timings are the best of this many runs")
    parser.add_argument("--no-hls4ml", action="store_true", help="csim: run only our generated C++")
    args = parser.parse_args(argv)
    if args.samples is not None and args.samples < 1:
        parser.error("--samples must be >= 1")
    if args.repeats < 1:
        parser.error("--repeats must be >= 1")
    chosen = {ALIASES.get(s, s) for s in (args.section or ["all"])}
    sections = list(SECTIONS) if "all" in chosen else [s for s in SECTIONS if s in chosen]
    warnings.filterwarnings("ignore")
    wall = time.perf_counter()
    print(f"sections: {', '.join(sections)}   repeats: {args.repeats}   cores: {os.cpu_count()}   "
          f"load average at start: {_load()}")

    failures: list[str] = []
    scratch = Path(tempfile.mkdtemp(prefix="cnn-bench-"))
    try:
        models = {}
        if "interp" in sections or "csim" in sections:
            models = {name: _export(config, scratch / f"{name}.onnx") for name, config in _cnn_configs().items()}
        if "interp" in sections:
            failures += interp_section(models, args.samples or DEFAULT_SAMPLES["interp"], args.repeats)
        if "csim" in sections:
            failures += csim_section(models["cnn-16x16"], args.samples or DEFAULT_SAMPLES["csim"], args.repeats,
                                     not args.no_hls4ml, scratch)
        if "latency" in sections:
            failures += latency_section(scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    print()
    print(f"checks: {'all hold' if not failures else 'FAILED: ' + '; '.join(failures)}")
    print(f"load average at end: {_load()}")
    print(f"wall time: {time.perf_counter() - wall:.1f} s")
    return 1 if failures else 0


# -- the models ---------------------------------------------------------------------------------


def _cnn_configs() -> dict:
    from cnn_zoo import MATRIX, CnnConfig

    return {"zoo-8x8": MATRIX[0],
            "cnn-16x16": CnnConfig(in_channels=3, channels=8, size=16, weight_bits=6, act_bits=6)}


def _export(config, path: Path) -> dict:
    from cnn_zoo import export_cnn_file, make_cnn

    export_cnn_file(make_cnn(config), config, path)
    return {"config": config, "path": path}


def _inputs(config, samples: int, seed: int = 0) -> np.ndarray:
    """U(-2, 2) (the zoo's calibration range) rounded to the 2**-10 grid, NCHW as PyTorch takes it."""
    from cnn_zoo import INPUT_RANGE

    x = np.random.default_rng(seed).uniform(-INPUT_RANGE, INPUT_RANGE, (samples, *config.input_shape))
    return np.round(x / INPUT_LSB) * INPUT_LSB


def _lowered(path):
    from qonnx_ir import load
    from transforms import lower

    return lower(load(path))[0]


def _reference(path, x, float64: bool) -> np.ndarray:
    from qonnx_ir.reference import execute_qonnx

    return np.asarray(next(iter(execute_qonnx(path, x, float64=float64).values())), dtype=np.float64)


# -- section a: interpreter ---------------------------------------------------------------------


def interp_section(models: dict, samples: int, repeats: int) -> list[str]:
    from qonnx_ir import execute, load

    print(f"\n## interp: qonnx_ir.execute vs qonnx execute_onnx, {samples:,} samples, best of {repeats}")
    rows, failures = [], []
    for name, model in models.items():
        path, config = model["path"], model["config"]
        original, lowered = load(path), _lowered(path)
        x = _inputs(config, samples)
        execute(lowered, x[:100])  # warm up BLAS and the thread pool
        ours_s, y = _best(lambda lowered=lowered, x=x: execute(lowered, x), repeats)
        theirs_s, y32 = _best(lambda original=original, x=x: _reference(original, x, float64=False), repeats)
        y64 = _reference(original, x, float64=True)
        exact = np.array_equal(y, y64)
        if not exact:
            failures.append(f"interp {name}: {int(np.sum(y != y64))} of {y.size} outputs differ from float64 QONNX")
        rows.append([name, "x".join(map(str, config.input_shape)), f"{samples / ours_s:,.0f}",
                     f"{samples / theirs_s:,.0f}", f"{theirs_s / ours_s:.2f}",
                     "yes" if exact else f"NO ({int(np.sum(np.any(y != y64, axis=1)))} samples differ)",
                     f"{np.max(np.abs(y32 - y64)):.3g}"])
    _table(["model", "input", "ours samples/s", "qonnx f32 samples/s", "ours / qonnx", "ours == float64 QONNX",
            "qonnx f32 max|diff| f64"], rows)
    return failures


# -- section b: C simulation --------------------------------------------------------------------


def csim_section(model: dict, samples: int, repeats: int, with_hls4ml: bool, scratch: Path) -> list[str]:
    from qonnx_ir import execute

    path, config = model["path"], model["config"]
    print(f"\n## csim: cnn-16x16 ({'x'.join(map(str, config.input_shape))}), io stream, {samples:,} samples, "
          f"predict best of {repeats}")
    lowered = _lowered(path)
    x = _inputs(config, samples, seed=1)
    interp, interp_codes = execute(lowered, x), execute(lowered, x, codes=True)
    reference = _reference(path, x, float64=True)
    failures = [] if np.array_equal(interp, reference) else ["csim: interpreter != float64 QONNX"]
    rows = [_ours(backend, lowered, x, interp, interp_codes, reference, scratch, repeats) for backend, _ in BACKENDS]
    failures += [f"csim ours {r['backend']}: {r['exact']}" for r in rows if r["exact"] != "yes"]
    if _hls4ml_usable(with_hls4ml):
        rows += [_hls4ml(backend, path, x, interp, reference, scratch, repeats) for _, backend in BACKENDS]
    _table(["backend", "tool", "project s", "compile s", "predict samples/s", "== interpreter", "argmax=interp",
            "argmax=float ref", "max|diff| float ref"], [_result_cells(r) for r in rows])
    _print_failures(rows)
    by = {(r["tool"], r["backend"]): r for r in rows}
    for backend, _ in BACKENDS:
        ours, theirs = by.get(("ours", backend)), by.get(("hls4ml", backend))
        if ours is not None and theirs is not None and "failed" not in theirs:
            print(f"  ours / hls4ml, {backend}: compile time {ours['compile'] / theirs['compile']:.2f}, "
                  f"throughput {ours['rate'] / theirs['rate']:.2f}")
    print("  float ref = qonnx execute_onnx in float64 on the QONNX file (equal to the interpreter here)")
    return failures


def _ours(backend, lowered, x, interp, interp_codes, reference, scratch, repeats) -> dict:
    row, result, call = _measure_ours(backend, lowered, x, interp, interp_codes, reference, scratch, repeats,
                                      warmup=10, io="stream", tb_samples=4)
    print(f"ours {backend}: generate {row['project']:.2f} s, g++ {row['compile']:.2f} s (the compile() call "
          f"{call:.2f} s; headers: {result.headers}), {row['rate']:,.0f} samples/s")
    return row


def _hls4ml(backend, model_path, x, interp, reference, scratch, repeats) -> dict:
    row = {"backend": backend.lower(), "tool": "hls4ml"}
    hls_model = _hls4ml_compiled(row, backend, model_path, scratch / f"hls4ml-{backend}", "io_stream")
    if hls_model is None:
        return row  # row["failed"] says why
    x = np.ascontiguousarray(x)  # channels first: the converted graph transposes its input itself
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # hls4ml prints as it predicts
            hls_model.predict(x[:10])
            best, y = _best(lambda: hls_model.predict(x), repeats)
    except Exception as error:
        return _failed(row, f"predict failed: {_one_line(error)}")
    y = np.asarray(y, dtype=np.float64).reshape(interp.shape)
    row["rate"] = len(x) / best
    differ = int(np.sum(np.any(y != interp, axis=1)))
    row["exact"] = "yes" if differ == 0 else f"no ({differ:,} of {len(x):,} differ)"
    row.update(_versus(y, interp, reference))
    print(f"hls4ml {row['backend']}: write {row['project']:.2f} s, build_lib.sh {row['compile']:.2f} s, "
          f"{row['rate']:,.0f} samples/s")
    return row


# -- section c: the SVHN network's latency estimate ---------------------------------------------


# block orders, tried in turn: the paper's first, then the equivalent with the pooling last
ORDERS = {"paper": "Conv -> MaxPool -> BatchNorm -> ReLU",
          "pool-last": "Conv -> BatchNorm -> ReLU (quant) -> MaxPool"}


def make_svhn(order: str = "paper", bits: int = SVHN_BITS, seed: int = 0):
    """The hls4ml paper's SVHN CNN in Brevitas, each block in the given ORDERS order.

    Power-of-two quantizers (the FixedPoint ones) with `bits` for weights and activations; the
    BatchNorms make every ReLU quantizer an explicit requantization. Random weights: the cycles
    the pragmas request depend on the shapes and reuse factors only.
    """
    import torch
    from brevitas.nn import QuantConv2d, QuantIdentity, QuantLinear, QuantReLU
    from brevitas.quant.fixed_point import (
        Int8ActPerTensorFixedPointMinMaxInit,
        Int8WeightPerTensorFixedPoint,
        Uint8ActPerTensorFixedPointMaxInit,
    )
    from brevitas.quant.scaled_int import Int24Bias
    from torch import nn

    torch.manual_seed(seed)
    weights = {"weight_quant": Int8WeightPerTensorFixedPoint, "weight_bit_width": bits, "bias": True,
               "bias_quant": Int24Bias, "return_quant_tensor": False}

    def relu():
        return QuantReLU(act_quant=Uint8ActPerTensorFixedPointMaxInit, bit_width=bits, max_val=1.0,
                         return_quant_tensor=True)

    layers: list = [QuantIdentity(act_quant=Int8ActPerTensorFixedPointMinMaxInit, bit_width=bits, min_val=-2.0,
                                  max_val=2.0, return_quant_tensor=True)]
    channels, size = 3, 32
    for filters in (16, 16, 24):
        block = [QuantConv2d(channels, filters, 3, **weights), nn.MaxPool2d(2), nn.BatchNorm2d(filters), relu()]
        layers += block if order == "paper" else [block[0], block[2], block[3], block[1]]
        channels, size = filters, (size - 2) // 2  # 3x3 without padding, then 2x2 pooling
    layers.append(nn.Flatten())
    features = channels * size * size
    for units in (42, 64):
        layers += [QuantLinear(features, units, **weights), nn.BatchNorm1d(units), relu()]
        features = units
    layers.append(QuantLinear(features, 10, **weights))
    return nn.Sequential(*layers).eval()


def latency_section(scratch: Path) -> list[str]:
    import torch
    from brevitas.export import export_qonnx

    import hlsgen
    from qonnx_ir import execute
    from qonnx_ir.errors import QonnxError

    print(f"\n## latency: SVHN CNN of the hls4ml paper, {SVHN_BITS}-bit, Vitis, io stream, reuse factor 1")
    for order, description in ORDERS.items():
        path = scratch / f"svhn-{order}.onnx"
        with contextlib.redirect_stdout(io.StringIO()):
            export_qonnx(make_svhn(order), input_t=torch.randn(1, 3, 32, 32), export_path=str(path), dynamo=False)
        try:
            lowered = _lowered(path)
        except QonnxError as error:
            print(f"blocks {description}: does not lower ({error}); trying the next order")
            continue
        print(f"blocks {description}: lowered as it is")
        break
    else:
        return ["latency: no block order of the SVHN network lowers"]
    project = hlsgen.generate(lowered, scratch / "svhn-vitis", backend="vitis", io="stream", reuse=1,
                              tb_samples=2, clock_ns=PAPER_CLOCK_NS)
    metadata = json.loads((project.path / "project.json").read_text())
    readme = (project.path / "README.md").read_text()
    layers = _readme_layers(readme)

    rows = [[r["layer"], r["op"], r["tokens"], r["II"], r["latency"]] for r in layers]
    _table(["layer", "op", "tokens", "II", "latency (cycles)"], rows)
    interval, latency = metadata["interval"], metadata["latency"]
    clock = metadata["clock_ns"]
    print()
    _table(["design", "interval (cycles)", "latency (cycles)", f"latency at {1000 / clock:g} MHz", "source"], [
        ["ours (hlsgen)", f"{interval:,}", f"{latency:,}", f"{latency * clock / 1000:.2f} us",
         "estimate from the pragmas (project.json, README), not synthesis"],
        ["hls4ml paper", "-", f"{PAPER_CYCLES:,}", f"{PAPER_CYCLES * PAPER_CLOCK_NS / 1000:.2f} us",
         "published (Aarrestad et al. 2021)"],
    ])
    failures = []
    total = re.search(r"a new sample every \*\*(\d+)\*\* cycles?, about \*\*(\d+)\*\*", readme)
    if total is None or (int(total.group(1)), int(total.group(2))) != (interval, latency):
        failures.append("latency: README total disagrees with project.json")
    if [int(r["latency"]) for r in layers] != [layer["latency"] for layer in metadata["layers"]]:
        failures.append("latency: README per-layer table disagrees with project.json")
    depths = sum(int(r["latency"]) for r in layers)
    print(f"  interval = the slowest stage's II x the tokens it handles per sample; "
          f"latency = interval + the {len(layers)} stages' depths ({interval:,} + {depths})")

    # the estimate belongs to a design that computes the right numbers
    x = np.round(np.random.default_rng(3).uniform(-2, 2, (SVHN_CHECK_SAMPLES, 3, 32, 32)) / INPUT_LSB) * INPUT_LSB
    result = project.compile()
    same = np.array_equal(project.predict(x, codes=True), execute(lowered, x, codes=True))
    print(f"  its C++ (g++ {result.seconds:.1f} s) == interpreter on {SVHN_CHECK_SAMPLES} samples: "
          f"{'yes' if same else 'NO'}")
    if not same:
        failures.append("latency: SVHN C++ != interpreter")
    return failures


def _readme_layers(readme: str) -> list[dict]:
    """The rows of the project README's `## Layers` table, as {column: cell}."""
    lines = [line for line in readme[readme.index("## Layers"):].splitlines() if line.startswith("|")]
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    return [dict(zip(header, (cell.strip().strip("`") for cell in line.strip("|").split("|"))))
            for line in lines[2:]]


if __name__ == "__main__":
    sys.exit(main())
