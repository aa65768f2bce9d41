"""The steps examples/digits_demo.py (MLP) and examples/digits_cnn.py (CNN) share.

Not an example to run: the shared options, data, training, QAT with uniform baselines, lowering,
the exactness check on the test set, the C simulation of one backend and summary.json.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

BATCH_SIZE, LEARNING_RATE = 64, 3e-3


class Stopwatch:
    def __init__(self):
        self.start = time.perf_counter()
        self.timings: dict[str, float] = {}
        self._stage_start = self.start

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def log(self, message: str) -> None:
        print(f"[{self.elapsed():6.1f}s] {message}", flush=True)

    def done(self, stage: str) -> None:
        now = time.perf_counter()
        self.timings[stage] = round(now - self._stage_start, 3)
        self._stage_start = now


def digits_parser(doc: str, out: str, epochs: int, epochs_help: str) -> argparse.ArgumentParser:
    """The options both examples take: --out, --epochs, --seed and --alpha; doc's first paragraph describes it."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--out", default=out, help=f"output folder (default: {out})")
    parser.add_argument("--epochs", type=int, default=epochs, help=f"{epochs_help} (default: {epochs})")
    parser.add_argument("--seed", type=int, default=0, help="seed of the split, initialisation and shuffling")
    parser.add_argument("--alpha", type=float, default=0.3,
                        help="HAWQ budget: fraction between the all-2-bit and all-8-bit BOPs (default 0.3)")
    return parser


def parse_digits_args(parser: argparse.ArgumentParser, argv):
    """parser.parse_args(argv) with the options of digits_parser checked."""
    args = parser.parse_args(argv)
    if args.epochs < 1:
        parser.error("--epochs must be at least 1")
    return args


def output_paths(folder: str, names) -> tuple[Path, dict[str, Path]]:
    """The output folder (created) and the path of each file written there, by name."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    return out, {name: out / name for name in names}


def on_one_thread(function, *args):
    """function(*args) with torch on one thread, restored after.

    A network this small trains fastest on one thread; more threads only add overhead
    (~10x slower per step on a busy 2-core machine).
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return function(*args)
    finally:
        torch.set_num_threads(threads)


def load_data(seed: int, images: bool = False):
    """sklearn's digits, stratified 80/20 train/test split: rows of 64 pixels, or (N, 1, 8, 8) images."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    # pixels 0..16 -> [0, 1], exact in float32; the images keep this view's strides: torch picks conv kernels by them
    pixels = digits.images if images else digits.data
    x = (pixels / 16.0).astype(np.float32)
    if images:
        x = x[:, None, :, :]
    y = digits.target.astype(np.int64)
    return train_test_split(x, y, test_size=0.2, stratify=y, random_state=seed)


def train(model: nn.Module, x: np.ndarray, y: np.ndarray, epochs: int, seed: int, label: str) -> float:
    """Adam with cross-entropy, shuffled mini-batches; returns the last epoch's mean loss."""
    from tqdm import tqdm

    generator = torch.Generator().manual_seed(seed)  # the order of the mini-batches
    inputs, targets = torch.from_numpy(x), torch.from_numpy(y)
    optimizer = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    mean_loss = float("nan")
    # disable=None: a progress bar on a terminal, nothing when stdout is a log file.
    with tqdm(range(epochs), desc=f"train {label}", unit="epoch", leave=False, file=sys.stdout,
              disable=None) as bar:
        for _ in bar:
            order = torch.randperm(len(inputs), generator=generator)
            total = 0.0
            for start in range(0, len(inputs), BATCH_SIZE):
                batch = order[start:start + BATCH_SIZE]
                optimizer.zero_grad()
                loss = loss_fn(model(inputs[batch]), targets[batch])
                loss.backward()
                optimizer.step()
                total += loss.item() * len(batch)
            mean_loss = total / len(inputs)
            bar.set_postfix(loss=f"{mean_loss:.4f}")
    return mean_loss


def torch_logits(model: nn.Module, x: np.ndarray, dtype=torch.float32) -> np.ndarray:
    model.eval()
    with torch.no_grad():
        output = model(torch.from_numpy(x).to(dtype))
    return getattr(output, "value", output).numpy()  # a QuantTensor carries its values in .value


def accuracy(logits: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(np.argmax(logits, axis=1) == y))


def quantize_and_train(float_model, bits, x_train, y_train, args):
    """apply_bits (calibrated on the training data) then QAT; returns (model, QAT history)."""
    from hawq import apply_bits, train_qat

    model = apply_bits(float_model, bits, input_signed=False, input_range=1.0, calibration=x_train)
    cut = int(0.85 * len(x_train))  # early stopping watches a slice of the training data, never the test set
    history = train_qat(model, (x_train[:cut], y_train[:cut]), (x_train[cut:], y_train[cut:]), epochs=args.epochs,
                        lr=LEARNING_RATE, batch_size=BATCH_SIZE, seed=args.seed, progress=None)
    model.eval()
    return model, history


def train_baselines(float_model, shapes, widths, x_train, y_train, x_test, y_test, args, clock) -> list[dict]:
    """Uniform-precision models (w = a = each width), trained as HAWQ's bits are; their BOPs and test accuracy."""
    from hawq.pareto import uniform_config

    baselines = []
    for width in widths:
        uniform = uniform_config(shapes, width)
        baseline, _ = quantize_and_train(float_model, uniform, x_train, y_train, args)
        baselines.append({"kind": "uniform", "label": f"uniform {width}-bit",
                          "bops": int(uniform.costs(shapes)["bops"]),
                          "accuracy": accuracy(torch_logits(baseline, x_test), y_test)})
        clock.log(f"QAT uniform {width}-bit: test accuracy {baselines[-1]['accuracy']:.4f}, "
                  f"{baselines[-1]['bops']:,} BOPs")
    return baselines


def plot_accuracy_vs_bops(baselines, alpha, hawq_bops, hawq_accuracy, float_accuracy, path: Path, title: str) -> None:
    from hawq.plots import plot_pareto

    points = baselines + [{"kind": "hawq", "label": f"HAWQ alpha={alpha}", "bops": hawq_bops,
                           "accuracy": hawq_accuracy}]
    plot_pareto([{**p, "mean": p["accuracy"], "min": p["accuracy"], "max": p["accuracy"]} for p in points],
                path, reference=float_accuracy, title=title)


def write_report(path: Path, title: str, report_lines: list[str], table: str) -> None:
    lines = [f"# Lowering report: {title}", "", "## Decisions and deviations", ""]
    lines += [f"- {line}" for line in report_lines] or ["- (none reported)"]
    lines += ["", "## Layers", "", "```", table, "```", ""]
    path.write_text("\n".join(lines))


def lower_and_report(paths: dict, title: str):
    """model.onnx -> model.hw.onnx and lowering_report.md; returns (lowered, lowering context, cost table)."""
    import qonnx_ir
    from qonnx_ir.cost import format_table, layer_costs
    from transforms import lower

    with warnings.catch_warnings():  # qonnx's GemmToMatMul warns about every opset but 9; harmless here
        warnings.filterwarnings("ignore", message="The GemmToMatMul transformation only offers")
        lowered, context = lower(qonnx_ir.load(paths["model.onnx"]))
    qonnx_ir.save(lowered, paths["model.hw.onnx"])
    table = format_table(layer_costs(lowered))
    write_report(paths["lowering_report.md"], title, context.report.lines, table)
    return lowered, context, table


@dataclass
class Evaluation:
    qonnx_accuracy: float
    hw_logits: np.ndarray  # the lowered graph, integer interpreter
    hw_accuracy: float
    exact_logits: np.ndarray  # the Brevitas model in float64
    mismatches: int
    max_difference: float

    @property
    def bit_exact(self) -> bool:
        return self.mismatches == 0


def evaluate(model, lowered, paths: dict, x_test, y_test) -> Evaluation:
    """The QONNX graph (qonnx in float64) and the lowered graph on the test set, the lowered outputs compared
    with the Brevitas model in float64 element by element; saves test_x.npy and test_y_hw.npy."""
    import qonnx_ir
    from qonnx_ir.reference import execute_qonnx

    qonnx_logits = next(iter(execute_qonnx(paths["model.onnx"], x_test.astype(np.float64)).values()))
    qonnx_accuracy = accuracy(qonnx_logits, y_test)
    hw_logits = np.asarray(qonnx_ir.execute(lowered, x_test.astype(np.float64)))  # inputs as PyTorch takes them
    hw_accuracy = accuracy(hw_logits, y_test)
    exact_logits = torch_logits(copy.deepcopy(model).double(), x_test, torch.float64)
    if hw_logits.shape == exact_logits.shape:
        mismatches = int(np.sum(hw_logits != exact_logits))
        max_difference = float(np.max(np.abs(hw_logits - exact_logits)))
    else:
        mismatches, max_difference = int(exact_logits.size), float("nan")
    np.save(paths["test_x.npy"], x_test)
    np.save(paths["test_y_hw.npy"], hw_logits)
    return Evaluation(qonnx_accuracy, hw_logits, hw_accuracy, exact_logits, mismatches, max_difference)


def print_accuracies(kind: str, float_accuracy: float, brevitas_accuracy: float, result: Evaluation) -> None:
    """The test accuracies of the float model (an MLP or CNN) and the three implementations; bit-exact or not."""
    print(f"test accuracy  float torch {kind} (no quantization)      {float_accuracy:.4f}")
    print(f"               (a) Brevitas model in PyTorch          {brevitas_accuracy:.4f}")
    print(f"               (b) QONNX graph, qonnx float64         {result.qonnx_accuracy:.4f}")
    print(f"               (c) lowered graph, integer interpreter {result.hw_accuracy:.4f}")
    hw_logits, exact_logits = result.hw_logits, result.exact_logits
    if result.bit_exact:
        print(f"bit-exact: yes ({hw_logits.shape[0]} samples x {hw_logits.shape[1]} outputs) "
              "lowered == Brevitas in float64")
    else:
        print(f"bit-exact: NO, {result.mismatches} of {exact_logits.size} output elements differ from Brevitas in "
              f"float64 (max |difference| {result.max_difference:.3g}, lowered output shape {hw_logits.shape})")


def simulate_hls(lowered, out: Path, backend: str, io: str, x_test):
    """out/hls_<backend> (testbench on the first 20 test samples), compiled with g++ and run on the test set
    (C simulation); returns (project, compile result, C simulation outputs)."""
    from hlsgen import generate

    project = generate(lowered, out / f"hls_{backend}", backend=backend, io=io, tb_inputs=x_test[:20])
    compiled = project.compile()
    return project, compiled, project.predict(x_test.astype(np.float64))


def write_summary(paths: dict, head: dict, float_accuracy, brevitas_accuracy, result: Evaluation, export_report,
                  hls: dict, clock: Stopwatch) -> dict:
    """head (what only one example reports), then the accuracies, the exactness checks, the HLS results, the
    timings and the paths: written to summary.json and returned."""
    summary = {
        **head,
        "accuracy": {"float_torch": float_accuracy, "brevitas_torch": brevitas_accuracy,
                     "qonnx_float64": result.qonnx_accuracy, "lowered_interpreter": result.hw_accuracy},
        "bit_exact": result.bit_exact,
        "mismatching_elements": result.mismatches,
        "max_abs_difference": result.max_difference if np.isfinite(result.max_difference) else None,
        "compared_elements": int(result.exact_logits.size),
        "export_max_abs_diff": export_report.max_abs_diff,
        "hls": hls,
        "timings_s": {**clock.timings, "total": round(clock.elapsed(), 3)},
        "paths": {name: str(path) for name, path in paths.items()},
    }
    paths["summary.json"].write_text(json.dumps(summary, indent=2) + "\n")
    return summary
