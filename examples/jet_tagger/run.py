"""HAWQ on the hls4ml LHC jet tagger, from float training to bit-exact HLS projects (README.md).

    python examples/jet_tagger/run.py [--data FILE] [--out out/jet_tagger] [--budgets 0.25 0.5 u6] [--quick]

float MLP 16-64-32-32-5 -> per-layer Hessian traces -> ILP bit allocation at each budget ->
the same QAT for every configuration (HAWQ and uniform baselines) -> for each HAWQ
configuration: qonnx_ir.export -> transforms.lower -> hlsgen.generate (vitis and catapult)
-> C simulation compared with the integer interpreter and with Brevitas in float64.

Data, first that applies: --data FILE (.npz with arrays `x` (N, 16) and `y` (N,), or .csv
with 16 feature columns then the label, optional header; labels integers 0..4 or class
names such as g q t w z); OpenML dataset 42468 "hls4ml_lhc_jets_hlf" when the network
answers (skipped with --no-download); otherwise a SYNTHETIC stand-in (5 Gaussian-mixture
classes in 16-D, fixed seed), labelled as such in every output.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import socket
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

OPENML_ID, OPENML_NAME, OPENML_HOST = 42468, "hls4ml_lhc_jets_hlf", "www.openml.org"
SYNTHETIC_NOTE = "SYNTHETIC STAND-IN DATA: results say nothing about jet tagging"
N_FEATURES, N_CLASSES = 16, 5
HIDDEN = (64, 32, 32)
BACKENDS = ("vitis", "catapult")
SPLIT_SEED = 42


@dataclass
class JetData:
    x: np.ndarray  # (N, 16) float32, unscaled
    y: np.ndarray  # (N,) int64 in 0..4
    source: str  # where the data came from, for people
    note: str | None = None  # SYNTHETIC_NOTE for the stand-in
    classes: tuple[str, ...] = ()

    @property
    def synthetic(self) -> bool:
        return self.note is not None


@dataclass
class Settings:
    samples: int | None  # None: all (real data) / default size (synthetic)
    float_epochs: int
    qat_epochs: int
    seeds: tuple[int, ...]
    budgets: tuple[str, ...]
    uniform_bits: tuple[int, ...]
    trace_samples: int
    max_probes: int
    batch_size: int
    hls_for: str  # "all" HAWQ configurations or only the "last"


FULL = Settings(None, 30, 20, (0, 1, 2), ("0.25", "0.5", "0.75"), (2, 3, 4, 6, 8), 10_000, 256, 512, "all")
QUICK = Settings(3_000, 6, 2, (0,), ("0.25", "0.5"), (3, 6), 1_000, 32, 256, "last")
SYNTHETIC_SAMPLES = 50_000


# -- data -------------------------------------------------------------------------------------


def label_codes(y) -> tuple[np.ndarray, tuple[str, ...]]:
    """Integer labels 0..K-1 from integers or class names (sorted names -> 0, 1, ...)."""
    y = np.asarray(y).ravel()
    if y.dtype.kind in "iu":
        return y.astype(np.int64), tuple(str(c) for c in range(int(y.max()) + 1))
    try:
        as_float = y.astype(np.float64)
        if np.all(as_float == np.round(as_float)):
            return as_float.astype(np.int64), tuple(str(c) for c in range(int(as_float.max()) + 1))
    except ValueError:
        pass
    names, codes = np.unique(y.astype(str), return_inverse=True)
    return codes.astype(np.int64), tuple(names)


def _checked(x, y, source: str, classes=None) -> JetData:
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 2 or x.shape[1] != N_FEATURES:
        raise ValueError(f"{source}: expected {N_FEATURES} features per sample, got shape {x.shape}")
    codes, names = label_codes(y)
    if len(codes) != len(x):
        raise ValueError(f"{source}: {len(x)} samples but {len(codes)} labels")
    if codes.min() < 0 or codes.max() >= N_CLASSES:
        raise ValueError(f"{source}: labels must be {N_CLASSES} classes (0..{N_CLASSES - 1} or 5 names)")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{source}: features contain NaN or inf")
    return JetData(x, codes, source, None, tuple(classes or names))


def load_local(path) -> JetData:
    """.npz with arrays x (N, 16) and y (N,), or .csv: 16 feature columns then the label."""
    path = Path(path)
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as arrays:
            if "x" not in arrays or "y" not in arrays:
                raise ValueError(f"{path}: an .npz needs arrays 'x' (N, 16) and 'y' (N,), has {list(arrays)}")
            return _checked(arrays["x"], arrays["y"], f"local file {path}")
    if path.suffix == ".csv":
        first = path.open().readline().split(",")
        header = any(not _is_number(cell) for cell in first[:N_FEATURES])
        table = np.genfromtxt(path, delimiter=",", dtype=str, skip_header=int(header))
        table = np.atleast_2d(table)
        if table.shape[1] != N_FEATURES + 1:
            raise ValueError(f"{path}: a .csv needs {N_FEATURES} feature columns and a label, got {table.shape[1]}")
        return _checked(table[:, :N_FEATURES].astype(np.float32), np.char.strip(table[:, -1]), f"local file {path}")
    raise ValueError(f"{path}: give a .npz or a .csv file")


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def openml_reachable(timeout: float) -> bool:
    try:
        with socket.create_connection((OPENML_HOST, 443), timeout=timeout):
            return True
    except OSError:
        return False


@contextlib.contextmanager
def _socket_timeout(seconds: float):
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)


def fetch_openml_jets(timeout: float = 5.0) -> JetData:
    """The hls4ml LHC jet data (830,000 jets) from OpenML; OSError when it cannot be had."""
    import sklearn.datasets

    if not openml_reachable(timeout):  # fail in milliseconds when offline (sklearn retries with delays)
        raise OSError(f"{OPENML_HOST} is not reachable")
    with _socket_timeout(timeout), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            bunch = sklearn.datasets.fetch_openml(data_id=OPENML_ID, as_frame=False, n_retries=1, delay=0.1)
        except Exception as error:  # network, HTTP, parsing: all mean "not available here"
            raise OSError(f"OpenML {OPENML_ID}: {type(error).__name__}: {error}") from None
    return _checked(bunch.data, bunch.target, f"OpenML {OPENML_ID} ({OPENML_NAME})")


def synthetic_jets(samples: int = SYNTHETIC_SAMPLES, seed: int = 0) -> JetData:
    """5 classes, each a mixture of 3 Gaussians in 16-D with random means and scales (fixed seed)."""
    rng = np.random.default_rng(seed)
    means = rng.normal(0.0, 1.0, (N_CLASSES, 3, N_FEATURES))
    scales = rng.uniform(0.6, 1.4, (N_CLASSES, 3, N_FEATURES))
    y = rng.integers(0, N_CLASSES, samples)
    component = rng.integers(0, 3, samples)
    x = means[y, component] + scales[y, component] * rng.standard_normal((samples, N_FEATURES))
    return JetData(x.astype(np.float32), y.astype(np.int64), f"synthetic stand-in (seed {seed})",
                   SYNTHETIC_NOTE, ("g", "q", "t", "w", "z"))


def load_jet_data(path=None, *, download: bool = True, timeout: float = 5.0,
                  synthetic_samples: int = SYNTHETIC_SAMPLES) -> JetData:
    """--data FILE, else OpenML (if `download` and reachable), else the labelled synthetic stand-in."""
    if path is not None:
        return load_local(path)
    if download:
        try:
            return fetch_openml_jets(timeout)
        except OSError:
            pass
    return synthetic_jets(synthetic_samples)


def split_and_scale(data: JetData, samples: int | None, seed: int = SPLIT_SEED):
    """Random subset of `samples` (None: all), split 60/20/20, features standardised on train."""
    from sklearn.model_selection import train_test_split

    x, y = data.x, data.y
    if samples is not None and samples < len(x):
        keep = np.random.default_rng(seed).choice(len(x), samples, replace=False)
        x, y = x[keep], y[keep]
    x_rest, x_test, y_rest, y_test = train_test_split(x, y, test_size=0.2, random_state=seed)
    x_train, x_val, y_train, y_val = train_test_split(x_rest, y_rest, test_size=0.25, random_state=seed)
    mean, std = x_train.mean(0), x_train.std(0) + 1e-6
    scale = lambda a: ((a - mean) / std).astype(np.float32)  # noqa: E731
    return (scale(x_train), y_train), (scale(x_val), y_val), (scale(x_test), y_test)


# -- model, budgets, HLS ----------------------------------------------------------------------


def float_model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    layers, width = [], N_FEATURES
    for hidden in HIDDEN:
        layers += [nn.Linear(width, hidden), nn.ReLU()]
        width = hidden
    return nn.Sequential(*layers, nn.Linear(width, N_CLASSES))


def parse_budgets(texts, layers) -> list[float]:
    """'0.5' (alpha), '12000' (BOPs) or 'u4' (the BOPs of uniform 4-bit)."""
    from hawq.pareto import uniform_config

    budgets = []
    for text in texts:
        text = str(text).strip()
        if text.lower().startswith("u") and text[1:].isdigit():
            budgets.append(float(uniform_config(layers, int(text[1:])).costs(layers)["bops"]))
        else:
            budgets.append(float(text))
    return budgets


def add_onnx_note(path: Path, note: str) -> None:
    import onnx

    model = onnx.load(path)
    entry = model.metadata_props.add()
    entry.key, entry.value = "data_note", note
    onnx.save(model, path)


def build_hls(model: nn.Module, name: str, out: Path, x_test: np.ndarray, y_test: np.ndarray,
              note: str | None, log) -> dict:
    """export -> lower -> both HLS backends -> compile -> C simulation vs interpreter vs Brevitas."""
    import copy

    import qonnx_ir
    from hawq.qat import accuracy
    from hlsgen import generate
    from qonnx_ir.errors import QonnxError
    from transforms import lower

    onnx_path = out / f"model_{name}.onnx"
    qonnx_ir.export(model, (1, N_FEATURES), onnx_path, progress=lambda _: None)
    if note:
        add_onnx_note(onnx_path, note)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The GemmToMatMul transformation only offers")
        lowered, _ = lower(qonnx_ir.load(onnx_path))
    qonnx_ir.save(lowered, out / f"model_{name}.hw.onnx")
    x64 = x_test.astype(np.float64)
    hw = np.asarray(qonnx_ir.execute(lowered, x64))
    with torch.no_grad():
        exact = copy.deepcopy(model).double().eval()(torch.from_numpy(x64))
    exact = getattr(exact, "value", exact).numpy()
    result = {"onnx": str(onnx_path), "brevitas_accuracy": accuracy(model, x_test, y_test),
              "lowered_accuracy": float(np.mean(hw.argmax(1) == y_test)),
              "lowered_equals_brevitas_float64": bool(hw.shape == exact.shape and np.array_equal(hw, exact)),
              "hls": {}}
    for backend in BACKENDS:
        project = generate(lowered, out / f"hls_{name}_{backend}", backend=backend, io="parallel",
                           tb_inputs=x_test[:20])
        if note:
            (project.path / "DATA_NOTE.txt").write_text(note + "\n")
        try:
            compiled = project.compile()
        except QonnxError as error:  # no g++ or no headers: the project is still written
            result["hls"][backend] = {"path": str(project.path), "csim": f"skipped: {error}"}
            continue
        csim = project.predict(x64)
        differ = int(np.sum(csim != hw))
        result["hls"][backend] = {"path": str(project.path), "compile_s": round(compiled.seconds, 2),
                                  "headers": compiled.headers, "csim_equals_interpreter": differ == 0,
                                  "differing_elements": differ, "compared_elements": int(hw.size)}
        log(f"  hls {backend}: {project.path}/ g++ {compiled.seconds:.1f} s; C simulation == interpreter on "
            f"{hw.size} outputs: {'yes' if differ == 0 else f'NO ({differ} differ)'}")
    return result


# -- the run ----------------------------------------------------------------------------------


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="budgets: 0..1 = alpha (HAWQ-V3), >1 = BOPs, uN = BOPs of uniform N-bit")
    parser.add_argument("--data", help="local .npz (x, y) or .csv (16 features + label) instead of OpenML")
    parser.add_argument("--out", default="out/jet_tagger", help="output folder (default: out/jet_tagger)")
    parser.add_argument("--budgets", nargs="+", help="BOPs budgets (default: 0.25 0.5 0.75; --quick 0.25 0.5)")
    parser.add_argument("--quick", action="store_true", help="a small run (< 2 min): little data, few epochs")
    parser.add_argument("--seeds", type=int, help="QAT seeds per configuration (default 3; --quick 1)")
    parser.add_argument("--samples", type=int, help="use a random subset of this many jets (default: all)")
    parser.add_argument("--no-download", action="store_true", help="do not try OpenML")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small MLP, shared machine: one thread is fastest
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # brevitas' optional-package warnings
            return run(args)
    finally:
        torch.set_num_threads(threads)


def banner(note: str) -> None:
    line = "#" * (len(note) + 8)
    print(f"{line}\n### {note} ###\n{line}", flush=True)


def run(args) -> dict:
    from hawq.hessian import hessian_traces
    from hawq.layers import layer_shapes
    from hawq.pareto import comparison_summary, comparison_table, markdown_table, pareto_sweep
    from hawq.qat import accuracy, train_qat

    start = time.perf_counter()
    log = lambda message: print(f"[{time.perf_counter() - start:6.1f}s] {message}", flush=True)  # noqa: E731
    settings = QUICK if args.quick else FULL
    seeds = tuple(range(args.seeds)) if args.seeds else settings.seeds
    samples = args.samples if args.samples else settings.samples
    progress = not args.no_progress
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    data = load_jet_data(args.data, download=not args.no_download,
                         synthetic_samples=samples or SYNTHETIC_SAMPLES)
    note = data.note
    if note:
        banner(note)
    (out / "DATA_SOURCE.txt").write_text(f"{data.source}\n" + (f"{note}\n" if note else ""))
    train, val, test = split_and_scale(data, samples)
    log(f"data: {data.source}: {len(train[0])} train / {len(val[0])} val / {len(test[0])} test jets, "
        f"classes {', '.join(data.classes)}")

    model = float_model()
    history = train_qat(model, train, val, epochs=settings.float_epochs, lr=3e-3, batch_size=settings.batch_size,
                        patience=5, progress=progress)
    float_accuracy = accuracy(model, *test)
    log(f"float MLP 16-64-32-32-5: {history['epochs_run']} epochs, test accuracy {float_accuracy:.4f}")

    n = min(settings.trace_samples, len(train[0]))
    subset = (torch.from_numpy(train[0][:n]), torch.from_numpy(train[1][:n]))
    traces = hessian_traces(model, nn.CrossEntropyLoss(), subset, max_probes=settings.max_probes,
                            min_probes=min(32, settings.max_probes), progress=progress)
    log(f"Hessian traces on {n} training jets: " + ", ".join(
        f"{name}: {t.trace:.3g} ± {t.std_error:.2g}" for name, t in traces.items()))

    layers = layer_shapes(model)
    budgets = parse_budgets(args.budgets or settings.budgets, layers)
    input_range = float(np.percentile(np.abs(train[0]), 99.9))
    rows = pareto_sweep(
        model, train, val, test, traces=traces, budgets=budgets, candidates=(2, 3, 4, 5, 6, 7, 8), act_rule=0,
        uniform_bits=settings.uniform_bits, seeds=seeds, epochs=settings.qat_epochs, lr=1e-3, out_dir=out,
        progress=progress, apply_options={"input_signed": True, "input_range": input_range},
        qat_options={"batch_size": settings.batch_size, "patience": 5}, note=note, keep_models=True,
        setup={"data": data.source, "model": "float MLP 16-64-32-32-5 (ReLU), shared by every configuration",
               "input": f"signed, range ±{input_range:.3g} (99.9th percentile of |standardised x|), "
                        "bits = the first layer's activation bits",
               "traces": f"Hutchinson, {n} training jets, up to {settings.max_probes} probes per layer"})
    log(f"sweep: {len(rows)} configurations x {len(seeds)} seeds -> {out}/pareto.md")

    hawq_rows = [row for row in rows if row["kind"] == "hawq"]
    hls = {}
    for row in hawq_rows if settings.hls_for == "all" else hawq_rows[-1:]:
        log(f"{row['name']} ({row['bits']}): export, lower, HLS")
        hls[row["name"]] = build_hls(row["models"][seeds[0]], row["name"], out, test[0], test[1], note, log)

    print(markdown_table(rows))
    print()
    print(comparison_table(rows))
    print(comparison_summary(rows))
    seconds = time.perf_counter() - start
    summary = {"note": note, "data": data.source, "quick": args.quick, "float_accuracy": float_accuracy,
               "budgets_bops_or_alpha": budgets, "seeds": list(seeds),
               "rows": [{k: v for k, v in row.items() if k != "models"} for row in rows],
               "hls": hls, "seconds": round(seconds, 1)}
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    if note:
        banner(note)
    log(f"done: {out}/ (traces.json, bits_*.yaml, pareto.md/.csv/.png, traces.png, model_*.onnx, hls_*/, "
        "summary.json)")
    return summary


if __name__ == "__main__":
    main(sys.argv[1:])
