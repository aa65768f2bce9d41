"""C simulation of the jet tagger: our generated HLS C++ next to hls4ml 1.3, both compiled with g++.

    python benchmarks/csim.py [--samples 20000] [--repeats 3] [--no-hls4ml]

Ours: the QONNX graph is lowered to the hardware dialect (transforms.lower), then for each
backend (vitis, catapult; io parallel, reuse 1) hlsgen.generate writes a project into a fresh
temporary directory and Project.compile() builds it with g++ on a cold cache. "compile s" is
CompileResult.seconds (the g++ call only); "project s" is the generate() call that writes the
project. Predict throughput is Project.predict(x) on all N inputs at once, best of R; its
output is checked for exact equality with qonnx_ir.execute on the lowered graph.

hls4ml: the same QONNX file, preprocessed as hls4ml's QONNX docs say (qonnx cleanup,
ConvertToChannelsLastAndClean, GemmToMatMul, cleanup), config_from_onnx_model(granularity=
'name', default_precision='fixed<16,6>'), convert_from_onnx_model(io_type='io_parallel').
ModelGraph.compile() is exactly write() followed by _compile(); both are timed separately:
"project s" is write() (writes the C++ project), "compile s" is _compile() (hls4ml's
build_lib.sh, i.e. its g++ calls, plus loading the library). Predict is hls_model.predict(x)
on the same N inputs (float64), best of R.

Inputs are representable in the default input type fixed<16,6>: integer codes drawn from a
normal distribution, clipped to the 16-bit range, times 2**-10. The float reference is qonnx's
own executor on the original graph in float64 (qonnx_ir.reference.execute_qonnx); argmax
agreement and max |diff| against it are informative only (softmax is approximated in hardware).
Everything is written under one temporary directory, removed at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "models"
MODEL = SHARED / "jet_tagging_qkeras_w6a6.onnx"
BACKENDS = [("vitis", "Vitis"), ("catapult", "Catapult")]  # (ours, hls4ml)

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(MODEL))
    parser.add_argument("--samples", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-hls4ml", action="store_true", help="run only our generated C++")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")
    wall = time.perf_counter()

    from qonnx_ir import execute, load
    from qonnx_ir.reference import execute_qonnx
    from transforms import lower

    print(f"model: {Path(args.model).name}   samples: {args.samples:,}   predict: best of {args.repeats}")
    print(f"load average at start: {_load()}   cores: {os.cpu_count()}")
    lowered, _ = lower(load(args.model))
    rng = np.random.default_rng(0)
    codes = np.clip(np.round(rng.normal(0, 4, (args.samples, 16)) * 2**10), -2**15, 2**15 - 1)
    x = np.ascontiguousarray(codes * 2.0**-10)

    interp = execute(lowered, x)
    interp_codes = execute(lowered, x, codes=True)
    reference = np.asarray(next(iter(execute_qonnx(args.model, x).values()))).reshape(len(x), -1)
    print(f"float QONNX reference vs our interpreter: argmax agreement {_agree(interp, reference):.4%}, "
          f"max |diff| {np.max(np.abs(interp - reference)):.3g}")

    rows: list[dict] = []
    scratch = Path(tempfile.mkdtemp(prefix="csim-bench-"))
    try:
        for ours_name, _ in BACKENDS:
            rows.append(_ours(ours_name, lowered, x, interp, interp_codes, reference, scratch, args.repeats))
        if _hls4ml_usable(not args.no_hls4ml):
            for _, theirs_name in BACKENDS:
                rows.append(_hls4ml(theirs_name, args.model, x, interp, reference, scratch, args.repeats))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    _results_table(rows)
    _ratios(rows)
    print(f"load average at end: {_load()}")
    print(f"wall time: {time.perf_counter() - wall:.1f} s")


def _ours(backend, lowered, x, interp, interp_codes, reference, scratch, repeats) -> dict:
    row, result, _ = _measure_ours(backend, lowered, x, interp, interp_codes, reference, scratch, repeats,
                                   warmup=100, io="parallel", reuse=1)
    print(f"ours {backend}: generate {row['project']:.2f} s, g++ {row['compile']:.2f} s (headers: {result.headers}), "
          f"{row['rate']:,.0f} samples/s, predict == qonnx_ir.execute exactly: {row['exact']}")
    return row


def _measure_ours(backend, lowered, x, interp, interp_codes, reference, scratch, repeats, warmup: int,
                  **generate_options):
    """Our project for `backend` generated into scratch, compiled cold, predict timed and checked against the
    interpreter (values and codes); returns (row, CompileResult, seconds of the whole compile() call)."""
    import hlsgen

    row = {"backend": backend, "tool": "ours"}
    start = time.perf_counter()
    project = hlsgen.generate(lowered, scratch / f"ours-{backend}", backend=backend, **generate_options)
    row["project"] = time.perf_counter() - start
    start = time.perf_counter()
    result = project.compile()
    call = time.perf_counter() - start  # also builds the precompiled vendor header, the first time ever
    assert not result.cached, "expected a cold compile in a fresh directory"
    row["compile"] = result.seconds
    project.predict(x[:warmup])  # load the library
    best, y = _best(lambda: project.predict(x), repeats)
    row["rate"] = len(x) / best
    exact = np.array_equal(y, interp) and np.array_equal(project.predict(x, codes=True), interp_codes)
    row["exact"] = "yes" if exact else f"NO ({int(np.sum(np.any(y != interp, axis=1)))} samples differ)"
    row.update(_versus(y, interp, reference))
    return row, result, call


def _hls4ml_usable(requested: bool) -> bool:
    """Whether to run hls4ml: requested and importable; prints why not otherwise."""
    if not requested:
        print("hls4ml: skipped (--no-hls4ml)")
        return False
    try:
        import hls4ml  # noqa: F401
    except Exception as error:  # ImportError, or a broken install
        print(f"hls4ml: skipped (not importable: {type(error).__name__}: {error})")
        return False
    return True


def _hls4ml(backend, model_path, x, interp, reference, scratch, repeats) -> dict:
    row = {"backend": backend.lower(), "tool": "hls4ml"}
    hls_model = _hls4ml_compiled(row, backend, model_path, scratch / f"hls4ml-{backend}", "io_parallel")
    if hls_model is None:
        return row  # row["failed"] says why
    try:
        hls_model.predict(x[:100])
        best, y = _best(lambda: hls_model.predict(x), repeats)
    except Exception as error:
        return _failed(row, f"predict failed: {_one_line(error)}")
    y = np.asarray(y, dtype=np.float64).reshape(len(x), -1)
    row["rate"] = len(x) / best
    row["exact"] = "yes" if np.array_equal(y, interp) else f"no ({np.sum(np.any(y != interp, axis=1)):,} differ)"
    row.update(_versus(y, interp, reference))
    print(f"hls4ml {row['backend']}: write {row['project']:.2f} s, build_lib.sh {row['compile']:.2f} s, "
          f"{row['rate']:,.0f} samples/s")
    return row


def _hls4ml_compiled(row, backend, model_path, outdir: Path, io_type: str):
    """hls4ml's model of the QONNX file, converted, written (row["project"] s) and compiled (row["compile"] s);
    None when a step fails, the reason in row["failed"]."""
    import hls4ml

    noise = io.StringIO()  # hls4ml prints every layer it parses
    try:
        with contextlib.redirect_stdout(noise):
            model = _qonnx_for_hls4ml(model_path)
            config = hls4ml.utils.config_from_onnx_model(model, granularity="name", backend=backend,
                                                         default_precision="fixed<16,6>")
            hls_model = hls4ml.converters.convert_from_onnx_model(
                model, output_dir=str(outdir), backend=backend, io_type=io_type, hls_config=config)
    except Exception as error:  # whatever hls4ml raises, reported in one line
        _failed(row, f"convert failed: {_one_line(error)}")
        return None
    try:
        with contextlib.redirect_stdout(noise):
            start = time.perf_counter()
            hls_model.write()
            row["project"] = time.perf_counter() - start
            start = time.perf_counter()
            hls_model._compile()  # compile() == write() + _compile()
            row["compile"] = time.perf_counter() - start
    except Exception as error:
        _failed(row, f"compile failed: {_build_error(outdir) or _one_line(error)}")
        return None
    return hls_model


def _qonnx_for_hls4ml(path):
    """The preprocessing hls4ml's QONNX documentation asks for."""
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.transformation.channels_last import ConvertToChannelsLastAndClean
    from qonnx.transformation.gemm_to_matmul import GemmToMatMul
    from qonnx.util.cleanup import cleanup_model

    model = cleanup_model(ModelWrapper(str(path)))
    model = model.transform(ConvertToChannelsLastAndClean())
    model = model.transform(GemmToMatMul())
    return cleanup_model(model)


def _build_error(outdir: Path) -> str | None:
    """hls4ml's Catapult build_lib.sh exits 0 even when g++ fails: rerun it to show g++'s first error."""
    script = outdir / "build_lib.sh"
    if not script.is_file():
        return None
    result = subprocess.run(["bash", str(script)], cwd=outdir, capture_output=True, text=True)
    lines = (result.stdout + result.stderr).splitlines()
    first = next((line for line in lines if "error" in line), None)
    if first is None:
        return None
    return "g++: " + first.replace(str(outdir) + "/", "").strip()


def _failed(row, reason) -> dict:
    print(f"hls4ml {row['backend']}: {reason}")
    row["failed"] = reason
    return row


def _one_line(error) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}"


def _best(function, repeats):
    best, result = float("inf"), None
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        result = function()
        best = min(best, time.perf_counter() - start)
    return best, result


def _agree(a, b) -> float:
    return float(np.mean(np.argmax(a, axis=1) == np.argmax(b, axis=1)))


def _versus(y, interp, reference) -> dict:
    return {"argmax_interp": _agree(y, interp), "argmax_ref": _agree(y, reference),
            "diff_ref": float(np.max(np.abs(y - reference)))}


def _results_table(rows) -> None:
    print()
    _table(["backend", "tool", "project s", "compile s", "predict samples/s", "bit-exact vs interp",
            "argmax=interp", "argmax=float ref", "max|diff| float ref"], [_result_cells(r) for r in rows])
    _print_failures(rows)
    print("  project s: ours = hlsgen.generate(), hls4ml = ModelGraph.write(); "
          "compile s: ours = Project.compile() g++ (cold), hls4ml = ModelGraph._compile() (build_lib.sh g++ + dlopen)")


def _result_cells(r) -> list[str]:
    """A row of _ours or _hls4ml as table cells (dashes where it failed)."""
    if "failed" in r:
        return [r["backend"], r["tool"]] + ["-"] * 7
    return [r["backend"], r["tool"], f"{r['project']:.2f}", f"{r['compile']:.2f}", f"{r['rate']:,.0f}",
            r["exact"], f"{r['argmax_interp']:.2%}", f"{r['argmax_ref']:.2%}", f"{r['diff_ref']:.3g}"]


def _print_failures(rows) -> None:
    for r in rows:
        if "failed" in r:
            print(f"  {r['tool']} {r['backend']}: {r['failed']}")


def _table(header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(h), *(len(str(row[i])) for row in rows)) if rows else len(h) for i, h in enumerate(header)]
    print(" | ".join(h.ljust(w) for h, w in zip(header, widths)))
    print("-|-".join("-" * w for w in widths))
    for row in rows:
        print(" | ".join(str(c).ljust(w) for c, w in zip(row, widths)))


def _ratios(rows) -> None:
    by = {(r["tool"], r["backend"]): r for r in rows}
    printed = False
    for backend, _ in BACKENDS:
        ours, theirs = by.get(("ours", backend)), by.get(("hls4ml", backend))
        if ours is None or theirs is None:
            continue
        if not printed:
            print()
            print("ratios ours / hls4ml:")
            printed = True
        if "failed" in theirs:
            print(f"  {backend:9s}: not computed (hls4ml {theirs['failed'].split(':')[0]})")
            continue
        compile_ratio = ours["compile"] / theirs["compile"]
        whole_ratio = (ours["project"] + ours["compile"]) / (theirs["project"] + theirs["compile"])
        rate_ratio = ours["rate"] / theirs["rate"]
        print(f"  {backend:9s}: compile time {compile_ratio:.2f} (target <= 0.5: {'met' if compile_ratio <= 0.5 else 'NOT met'})"
              f"   throughput {rate_ratio:.2f} (target >= 1: {'met' if rate_ratio >= 1 else 'NOT met'})"
              f"   [write+compile {whole_ratio:.2f}, informative]")


def _load() -> str:
    try:
        return " ".join(f"{value:.2f}" for value in os.getloadavg())
    except OSError:
        return "unknown"


if __name__ == "__main__":
    main()
