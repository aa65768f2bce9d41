"""A small residual CNN on scikit-learn's digits, end to end: HAWQ bits -> QAT -> exact firmware.

    python examples/digits_cnn.py [--out out/digits_cnn] [--epochs 30] [--seed 0] [--alpha 0.3]
                                  [--max-probes 256] [--baselines 4,8]

Stages (each prints one progress line with the elapsed seconds):

1. data    -- sklearn's bundled `digits` (1797 images, offline) as 8x8x1 images (N, 1, 8, 8),
              pixels 0..16 scaled to [0, 1], stratified 80/20 train/test split (seeded).
2. train   -- the float CNN (`DigitsCnn`, plain torch): two conv blocks (3x3 conv, BatchNorm,
              ReLU), a max pool after the first, a residual add of the two blocks' outputs, a
              max pool and a dense head; Adam, batch 64.
3. hawq    -- per-layer Hessian traces of the trained float model (Hutchinson; the residual add
              makes it no nn.Sequential, so the general double-backward path), sensitivities,
              and the ILP's bits under a BOPs budget (alpha of the way from all-2-bit to all-8-bit
              BOPs, the MACs of every convolution counted at its output size).
4. qat     -- `hawq.apply_bits` (power-of-two scales, calibrated on the training images) and
              `hawq.train_qat` with those bits; uniform-precision baselines trained the same way.
5. export  -- `qonnx_ir.export` writes model.onnx (QONNX), self-checked against PyTorch.
6. lower   -- `transforms.lower` writes model.hw.onnx and lowering_report.md.
7. check   -- test accuracy of the Brevitas model, the QONNX graph (qonnx in float64) and the
              lowered graph (bit-exact integer interpreter); the lowered outputs must equal the
              Brevitas model evaluated in float64 exactly.
8. hls     -- Vitis and Catapult projects with io_stream (`hlsgen.generate`), compiled with g++
              and run on the test set (C simulation), checked equal to the interpreter.

Everything is written under --out: bits.yaml, traces.json, traces.png, accuracy_vs_bops.png,
model.onnx, model.hw.onnx, lowering_report.md, test_x.npy, test_y_hw.npy, hls_vitis/,
hls_catapult/, summary.json.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

INPUT_SHAPE, CLASSES, CHANNELS = (1, 1, 8, 8), 10, 8
BATCH_SIZE, LEARNING_RATE = 64, 3e-3
CANDIDATES = (2, 3, 4, 5, 6, 7, 8)


class DigitsCnn(nn.Module):
    """8x8x1 -> conv block 1 (3x3, 8 channels, BatchNorm, ReLU) -> max pool 2 -> p (4x4x8)
    -> conv block 2 (3x3, 8 channels, BatchNorm, ReLU) -> + p (residual) -> max pool 2 (2x2x8)
    -> flatten -> dense 10 (the logits)."""

    def __init__(self, channels: int = CHANNELS):
        super().__init__()
        self.conv1 = nn.Conv2d(1, channels, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(channels)
        self.relu1 = nn.ReLU()
        self.pool1 = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(channels)
        self.relu2 = nn.ReLU()
        self.pool2 = nn.MaxPool2d(2)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(channels * 2 * 2, CLASSES)

    def forward(self, x):
        p = self.pool1(self.relu1(self.bn1(self.conv1(x))))
        y = p + self.relu2(self.bn2(self.conv2(p)))
        return self.fc(self.flatten(self.pool2(y)))


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


def load_data(seed: int):
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[:, None, :, :]  # (N, 1, 8, 8): pixels k/16, exact in float32
    y = digits.target.astype(np.int64)
    return train_test_split(x, y, test_size=0.2, stratify=y, random_state=seed)


def train_float(model: nn.Module, x: np.ndarray, y: np.ndarray, epochs: int, seed: int) -> float:
    """Adam with cross-entropy, shuffled mini-batches; returns the last epoch's mean loss."""
    from tqdm import tqdm

    generator = torch.Generator().manual_seed(seed)
    inputs, targets = torch.from_numpy(x), torch.from_numpy(y)
    optimizer = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    mean_loss = float("nan")
    with tqdm(range(epochs), desc="train float CNN", unit="epoch", leave=False, file=sys.stdout,
              disable=None) as bar:  # a bar on a terminal, nothing in a log file
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
    model.eval()
    return mean_loss


def torch_logits(model: nn.Module, x: np.ndarray, dtype=torch.float32) -> np.ndarray:
    model.eval()
    with torch.no_grad():
        output = model(torch.from_numpy(x).to(dtype))
    return getattr(output, "value", output).numpy()  # a QuantTensor carries its values in .value


def accuracy(logits: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(np.argmax(logits, axis=1) == y))


def choose_bits(float_model, x_train, y_train, args, out: Path, clock) -> dict:
    """Hessian traces of the trained float model -> Omega -> ILP (a = w) under a BOPs budget."""
    from hawq import allocate_bits, hessian_traces, layer_shapes, sensitivities
    from hawq.plots import plot_traces
    from hawq.sensitivity import write_traces_json

    data = (torch.from_numpy(x_train), torch.from_numpy(y_train))
    traces = hessian_traces(float_model, nn.CrossEntropyLoss(), data, rel_tol=0.02, max_probes=args.max_probes,
                            min_probes=min(32, args.max_probes), seed=0, progress=None)
    plot_traces(traces, out / "traces.png", title="digits CNN: per-layer Hessian traces")
    shapes = layer_shapes(float_model, INPUT_SHAPE)
    omega = sensitivities(float_model, traces, CANDIDATES)
    write_traces_json(out / "traces.json", float_model, traces, omega, {"data": "sklearn digits (train split)"},
                      input_shape=INPUT_SHAPE)
    bits = allocate_bits(omega, shapes, alpha=args.alpha, candidates=CANDIDATES, act_rule=0)
    bits.save(out / "bits.yaml")
    for shape in shapes:
        estimate = traces[shape.name]
        clock.log(f"hawq: {shape.name:5s} {shape.kind:6s} {shape.macs:6,} MACs: Tr(H) = {estimate.trace:.4g} "
                  f"+- {estimate.std_error:.2g} ({estimate.probes} probes) -> {bits.weights[shape.name]}-bit weights, "
                  f"{bits.activations[shape.name]}-bit inputs")
    return {"bits": bits, "shapes": shapes,
            "traces": {n: {"trace": e.trace, "std_error": e.std_error, "probes": e.probes} for n, e in traces.items()}}


def quantize_and_train(float_model, bits, x_train, y_train, args):
    """apply_bits (calibrated on the training images) then QAT; returns (model, QAT history)."""
    from hawq import apply_bits, train_qat

    model = apply_bits(float_model, bits, input_signed=False, input_range=1.0, calibration=x_train)
    cut = int(0.85 * len(x_train))  # early stopping watches a slice of the training data, never the test set
    history = train_qat(model, (x_train[:cut], y_train[:cut]), (x_train[cut:], y_train[cut:]), epochs=args.epochs,
                        lr=LEARNING_RATE, batch_size=BATCH_SIZE, seed=args.seed, progress=None)
    model.eval()
    return model, history


def write_report(path: Path, report_lines: list[str], table: str) -> None:
    lines = ["# Lowering report: digits CNN", "", "## Decisions and deviations", ""]
    lines += [f"- {line}" for line in report_lines] or ["- (none reported)"]
    lines += ["", "## Layers", "", "```", table, "```", ""]
    path.write_text("\n".join(lines))


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="out/digits_cnn", help="output folder (default: out/digits_cnn)")
    parser.add_argument("--epochs", type=int, default=30, help="float training and QAT epochs (default: 30)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the split, initialisation and shuffling")
    parser.add_argument("--alpha", type=float, default=0.3,
                        help="HAWQ budget: fraction between the all-2-bit and all-8-bit BOPs (default 0.3)")
    parser.add_argument("--max-probes", type=int, default=256,
                        help="Hutchinson probes per layer at most (default 256; fewer if 2 %% is reached first)")
    parser.add_argument("--baselines", default="4,8",
                        help="uniform bit widths trained the same way for comparison ('' for none; default 4,8)")
    args = parser.parse_args(argv)
    if args.epochs < 1:
        parser.error("--epochs must be at least 1")
    if args.max_probes < 2:
        parser.error("--max-probes must be at least 2")
    try:
        args.baselines = [int(b) for b in args.baselines.split(",") if b.strip()]
    except ValueError:
        parser.error(f"--baselines must be comma-separated bit widths, got {args.baselines!r}")
    return args


def main(argv=None) -> dict:
    """Run the whole example; returns the summary that is also written to summary.json."""
    args = parse_args(argv)
    # A network this small trains fastest on one thread (restored when main returns).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _run(args)
    finally:
        torch.set_num_threads(threads)


def _run(args) -> dict:
    import qonnx_ir
    from hawq.pareto import uniform_config
    from hawq.plots import plot_pareto
    from hlsgen import generate
    from qonnx_ir.cost import format_table, layer_costs
    from qonnx_ir.reference import execute_qonnx
    from transforms import lower

    clock = Stopwatch()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {name: out / name for name in ("bits.yaml", "traces.json", "traces.png", "accuracy_vs_bops.png",
                                           "model.onnx", "model.hw.onnx", "lowering_report.md", "test_x.npy",
                                           "test_y_hw.npy", "summary.json")}

    # 1. data
    x_train, x_test, y_train, y_test = load_data(args.seed)
    clock.log(f"data: sklearn digits as {x_train.shape[1]}x{x_train.shape[2]}x{x_train.shape[3]} images, "
              f"{len(x_train)} train / {len(x_test)} test, {CLASSES} classes")
    clock.done("data")

    # 2. the float CNN
    torch.manual_seed(args.seed)
    float_model = DigitsCnn()
    float_loss = train_float(float_model, x_train, y_train, args.epochs, args.seed)
    float_accuracy = accuracy(torch_logits(float_model, x_test), y_test)
    clock.log(f"train float CNN (torch Conv2d/BatchNorm2d/ReLU/MaxPool2d, residual add, Linear): {args.epochs} "
              f"epochs, loss {float_loss:.4f}, test accuracy {float_accuracy:.4f}")
    clock.done("train")

    # 3. HAWQ: traces -> sensitivities -> ILP under a BOPs budget
    hawq_result = choose_bits(float_model, x_train, y_train, args, out, clock)
    bits, shapes = hawq_result["bits"], hawq_result["shapes"]
    clock.done("hawq")

    # 4. QAT with those bits, and uniform baselines trained the same way
    model, history = quantize_and_train(float_model, bits, x_train, y_train, args)
    brevitas_logits = torch_logits(model, x_test)
    brevitas_accuracy = accuracy(brevitas_logits, y_test)
    quant_bops = int(bits.costs(shapes)["bops"])
    clock.log(f"QAT with HAWQ's bits: {history['epochs_run']} epochs, best after epoch {history['best_epoch'] + 1}, "
              f"test accuracy {brevitas_accuracy:.4f}, {quant_bops:,} BOPs")
    baselines = []
    for width in args.baselines:
        uniform = uniform_config(shapes, width)
        baseline, _ = quantize_and_train(float_model, uniform, x_train, y_train, args)
        baselines.append({"kind": "uniform", "label": f"uniform {width}-bit",
                          "bops": int(uniform.costs(shapes)["bops"]),
                          "accuracy": accuracy(torch_logits(baseline, x_test), y_test)})
        clock.log(f"QAT uniform {width}-bit: test accuracy {baselines[-1]['accuracy']:.4f}, "
                  f"{baselines[-1]['bops']:,} BOPs")
    points = baselines + [{"kind": "hawq", "label": f"HAWQ alpha={args.alpha}", "bops": quant_bops,
                           "accuracy": brevitas_accuracy}]
    plot_pareto([{**p, "mean": p["accuracy"], "min": p["accuracy"], "max": p["accuracy"]} for p in points],
                paths["accuracy_vs_bops.png"], reference=float_accuracy,
                title="digits CNN: test accuracy vs BOPs (1 seed)")
    clock.done("qat")

    # 5. export to QONNX (self-checked against PyTorch)
    export_report = qonnx_ir.export(model, INPUT_SHAPE, paths["model.onnx"], progress=lambda _: None)
    qonnx_bops = sum(row.bops for row in layer_costs(qonnx_ir.load(paths["model.onnx"])))
    clock.log(f"export: {paths['model.onnx']} ({export_report.n_nodes} nodes, self-check max |onnx - torch| "
              f"= {export_report.max_abs_diff:.3g}); qonnx counts {qonnx_bops:,} BOPs, HAWQ's ILP {quant_bops:,}")
    clock.done("export")

    # 6. lower to the hardware dialect
    with warnings.catch_warnings():  # qonnx's GemmToMatMul warns about every opset but 9; harmless here
        warnings.filterwarnings("ignore", message="The GemmToMatMul transformation only offers")
        lowered, context = lower(qonnx_ir.load(paths["model.onnx"]))
    qonnx_ir.save(lowered, paths["model.hw.onnx"])
    table = format_table(layer_costs(lowered))
    write_report(paths["lowering_report.md"], context.report.lines, table)
    clock.log(f"lower: {paths['model.hw.onnx']} ({len(lowered.graph.node)} hardware-dialect nodes)")
    print(table)
    clock.done("lower")

    # 7. the three implementations on the test set
    qonnx_logits = next(iter(execute_qonnx(paths["model.onnx"], x_test.astype(np.float64)).values()))
    qonnx_accuracy = accuracy(qonnx_logits, y_test)
    hw_logits = np.asarray(qonnx_ir.execute(lowered, x_test.astype(np.float64)))  # NCHW in, as PyTorch takes it
    hw_accuracy = accuracy(hw_logits, y_test)
    exact_logits = torch_logits(copy.deepcopy(model).double(), x_test, torch.float64)
    if hw_logits.shape == exact_logits.shape:
        mismatches = int(np.sum(hw_logits != exact_logits))
        max_difference = float(np.max(np.abs(hw_logits - exact_logits)))
    else:
        mismatches, max_difference = int(exact_logits.size), float("nan")
    bit_exact = mismatches == 0
    np.save(paths["test_x.npy"], x_test)
    np.save(paths["test_y_hw.npy"], hw_logits)
    clock.done("evaluate")
    print(f"test accuracy  float torch CNN (no quantization)      {float_accuracy:.4f}")
    print(f"               (a) Brevitas model in PyTorch          {brevitas_accuracy:.4f}")
    print(f"               (b) QONNX graph, qonnx float64         {qonnx_accuracy:.4f}")
    print(f"               (c) lowered graph, integer interpreter {hw_accuracy:.4f}")
    if bit_exact:
        print(f"bit-exact: yes ({hw_logits.shape[0]} samples x {hw_logits.shape[1]} outputs) "
              "lowered == Brevitas in float64")
    else:
        print(f"bit-exact: NO, {mismatches} of {exact_logits.size} output elements differ from Brevitas in "
              f"float64 (max |difference| {max_difference:.3g}, lowered output shape {hw_logits.shape})")

    # 8. io_stream HLS projects for both backends, their C++ run on the test set
    hls = {}
    for backend in ("vitis", "catapult"):
        project = generate(lowered, out / f"hls_{backend}", backend=backend, io="stream", tb_inputs=x_test[:20])
        compiled = project.compile()
        csim_logits = project.predict(x_test.astype(np.float64))
        same_shape = csim_logits.shape == hw_logits.shape
        csim_mismatches = int(np.sum(csim_logits != hw_logits)) if same_shape else int(hw_logits.size)
        hls[backend] = {"path": str(project.path), "io": "stream", "compile_s": round(compiled.seconds, 2),
                        "bit_exact": csim_mismatches == 0, "mismatching_elements": csim_mismatches,
                        "compared_elements": int(hw_logits.size)}
        clock.log(f"hls {backend} (io stream): {project.path}/ (g++ {compiled.seconds:.1f} s, headers from "
                  f"{compiled.headers}); C simulation == interpreter on {hw_logits.size} outputs: "
                  f"{'yes' if csim_mismatches == 0 else f'NO, {csim_mismatches} differ'}")
    clock.done("hls")

    summary = {
        "data": {"train_samples": len(x_train), "test_samples": len(x_test), "input_shape": list(INPUT_SHAPE),
                 "seed": args.seed},
        "layers": [{"name": s.name, "kind": s.kind, "in": s.in_features, "out": s.out_features,
                    "kernel": list(s.kernel), "macs": s.macs, "weights": s.n_weights} for s in shapes],
        "hawq": {"alpha": args.alpha, "max_probes": args.max_probes, "weights": dict(bits.weights),
                 "activations": dict(bits.activations),
                 "bops": quant_bops, "qonnx_bops": qonnx_bops, "budget_bops": bits.meta["budget"]["bops"],
                 "traces": hawq_result["traces"], "baselines": baselines},
        "epochs": args.epochs,
        "qat_epochs_run": history["epochs_run"],
        "accuracy": {"float_torch": float_accuracy, "brevitas_torch": brevitas_accuracy,
                     "qonnx_float64": qonnx_accuracy, "lowered_interpreter": hw_accuracy},
        "bit_exact": bit_exact,
        "mismatching_elements": mismatches,
        "max_abs_difference": max_difference if np.isfinite(max_difference) else None,
        "compared_elements": int(exact_logits.size),
        "export_max_abs_diff": export_report.max_abs_diff,
        "hls": hls,
        "timings_s": {**clock.timings, "total": round(clock.elapsed(), 3)},
        "paths": {name: str(path) for name, path in paths.items()},
    }
    paths["summary.json"].write_text(json.dumps(summary, indent=2) + "\n")
    clock.log(f"done: {out}/ (summary.json, bits.yaml, traces.json, model.onnx, model.hw.onnx, lowering_report.md, "
              "test_*.npy, hls_vitis/, hls_catapult/)")
    return summary


if __name__ == "__main__":
    main()
