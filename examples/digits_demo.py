"""End-to-end demo: train a quantized MLP on scikit-learn's digits, export, lower, check bit-exactness.

    python examples/digits_demo.py [--out out/demo] [--epochs 40] [--seed 0]

Stages (each prints one progress line with the elapsed seconds):

1. data    -- sklearn's bundled 8x8 `digits` (1797 images, offline), pixels 0..16 scaled to
              [0, 1], stratified 80/20 train/test split (seeded).
2. train   -- a plain float torch MLP (64-32-16-10, no quantization) and the Brevitas MLP of
              the same shape (`make_model`), trained the same way (Adam, batch 64).
3. export  -- `qonnx_ir.export` writes model.onnx (QONNX) and self-checks it against PyTorch.
4. lower   -- `transforms.lower` produces the hardware dialect, saved as model.hw.onnx, and
              lowering_report.md (decisions, deviations, per-layer cost table).
5. check   -- test accuracy of the Brevitas model (PyTorch), the QONNX graph (qonnx's executor
              in float64) and the lowered graph (qonnx_ir's bit-exact integer interpreter), and
              whether the lowered outputs equal the Brevitas model evaluated in float64 exactly.

Every scale in `make_model` is a power of two, so the Brevitas model in float64 is exact
fixed-point arithmetic and the firmware can reproduce it bit for bit.

Everything is written under --out: model.onnx, model.hw.onnx, lowering_report.md,
test_x.npy, test_y_hw.npy, summary.json. The model alone can be exported with
`qonnx export examples/digits_demo.py:make_model -o model.onnx --input-shape 1,64`.
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

with warnings.catch_warnings():  # brevitas warns about optional packages at import
    warnings.simplefilter("ignore")
    from brevitas.nn import QuantIdentity, QuantLinear, QuantReLU
    from brevitas.quant.fixed_point import (
        Int8WeightPerTensorFixedPoint,
        Uint8ActPerTensorFixedPoint,
        Uint8ActPerTensorFixedPointMaxInit,
    )
    from brevitas.quant.scaled_int import Int16Bias

IN_FEATURES, HIDDEN, CLASSES = 64, (32, 16), 10
INPUT_BITS, WEIGHT_BITS, ACT_BITS = 8, 6, 6
BATCH_SIZE, LEARNING_RATE = 64, 3e-3


def make_model() -> nn.Module:
    """The quantized MLP 64 -> 32 -> 16 -> 10 with power-of-two scales everywhere.

    - input: unsigned 8-bit, power-of-two scale initialised for inputs in [0, 1]
      (pixels k/16 then land exactly on the grid);
    - weights: 6-bit signed, narrow range, per-tensor scale 2**ceil(log2 max|w|) / 2**5;
    - biases: 16-bit integers on the accumulator's scale (input scale * weight scale);
    - hidden activations: 6-bit unsigned ReLU, learned power-of-two scale;
    - logits: the last layer's accumulator, rescaled exactly (no output quantizer).
    """
    quant = dict(return_quant_tensor=True)
    linear = dict(weight_quant=Int8WeightPerTensorFixedPoint, weight_bit_width=WEIGHT_BITS,
                  bias=True, bias_quant=Int16Bias)
    layers: list[nn.Module] = [
        QuantIdentity(act_quant=Uint8ActPerTensorFixedPointMaxInit, bit_width=INPUT_BITS, max_val=1.0, **quant)
    ]
    width = IN_FEATURES
    for hidden in HIDDEN:
        layers += [QuantLinear(width, hidden, **linear, **quant),
                   QuantReLU(act_quant=Uint8ActPerTensorFixedPoint, bit_width=ACT_BITS, **quant)]
        width = hidden
    layers.append(QuantLinear(width, CLASSES, **linear, return_quant_tensor=False))
    return nn.Sequential(*layers)


def make_float_model() -> nn.Module:
    """The same shape with no quantization at all: the accuracy the quantized model aims for."""
    layers: list[nn.Module] = []
    width = IN_FEATURES
    for hidden in HIDDEN:
        layers += [nn.Linear(width, hidden), nn.ReLU()]
        width = hidden
    layers.append(nn.Linear(width, CLASSES))
    return nn.Sequential(*layers)


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
    x = (digits.data / 16.0).astype(np.float32)  # pixels 0..16 -> [0, 1], exact in float32
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


def write_report(path: Path, report_lines: list[str], table: str) -> None:
    lines = ["# Lowering report: digits MLP", "", "## Decisions and deviations", ""]
    lines += [f"- {line}" for line in report_lines] or ["- (none reported)"]
    lines += ["", "## Layers", "", "```", table, "```", ""]
    path.write_text("\n".join(lines))


def choose_bits(float_model, x_train, y_train, alpha: float, out: Path, clock) -> dict:
    """Hessian traces of the trained float model -> Omega -> ILP (weights and activations a = w)."""
    from hawq import allocate_bits, hessian_traces, layer_shapes, sensitivities
    from hawq.plots import plot_traces

    traces = hessian_traces(float_model, nn.CrossEntropyLoss(), (torch.from_numpy(x_train), torch.from_numpy(y_train)),
                            rel_tol=0.02, seed=0, progress=None)
    plot_traces(traces, out / "traces.png", title="digits MLP: per-layer Hessian traces")
    bits = allocate_bits(sensitivities(float_model, traces), layer_shapes(float_model), alpha=alpha,
                         candidates=(2, 3, 4, 5, 6, 7, 8), act_rule=0)
    bits.save(out / "bits.yaml")
    for name, estimate in traces.items():
        clock.log(f"hawq: layer {name}: Tr(H) = {estimate.trace:.4g} +- {estimate.std_error:.2g} "
                  f"({estimate.probes} probes) -> {bits.weights[name]}-bit weights, {bits.activations[name]}-bit inputs")
    return {"bits": bits, "traces": {n: {"trace": e.trace, "std_error": e.std_error} for n, e in traces.items()}}


def quantize_and_train(float_model, bits, x_train, y_train, args):
    """apply_bits (calibrated on the training data) then QAT; returns (model, QAT history)."""
    from hawq import apply_bits, train_qat

    model = apply_bits(float_model, bits, input_signed=False, input_range=1.0, calibration=x_train)
    cut = int(0.85 * len(x_train))  # early stopping watches a slice of the training data, never the test set
    history = train_qat(model, (x_train[:cut], y_train[:cut]), (x_train[cut:], y_train[cut:]), epochs=args.epochs,
                        lr=LEARNING_RATE, batch_size=BATCH_SIZE, seed=args.seed, progress=None)
    model.eval()
    return model, history


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="out/demo", help="output folder (default: out/demo)")
    parser.add_argument("--epochs", type=int, default=40, help="training epochs (default: 40)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the split, initialisation and shuffling")
    parser.add_argument("--alpha", type=float, default=0.3,
                        help="HAWQ budget: fraction between the all-2-bit and all-8-bit BOPs (default 0.3)")
    parser.add_argument("--baselines", default="4,8", help="uniform bit widths trained the same way for comparison")
    args = parser.parse_args(argv)
    if args.epochs < 1:
        parser.error("--epochs must be at least 1")
    return args


def main(argv=None) -> dict:
    """Run the whole demo; returns the summary that is also written to summary.json."""
    args = parse_args(argv)
    # A network this small trains fastest on one thread; more threads only add overhead
    # (~10x slower per step on a busy 2-core machine). Restored when main returns.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _run(args)
    finally:
        torch.set_num_threads(threads)


def _run(args) -> dict:
    import qonnx_ir
    from qonnx_ir.cost import format_table, layer_costs
    from qonnx_ir.reference import execute_qonnx
    from hawq import layer_shapes
    from hawq.pareto import uniform_config
    from hawq.plots import plot_pareto
    from hlsgen import generate
    from transforms import lower

    clock = Stopwatch()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {name: out / name for name in ("model.onnx", "model.hw.onnx", "lowering_report.md", "test_x.npy",
                                           "test_y_hw.npy", "summary.json", "bits.yaml", "traces.png",
                                           "accuracy_vs_bops.png")}

    # 1. data
    x_train, x_test, y_train, y_test = load_data(args.seed)
    clock.log(f"data: sklearn digits, {len(x_train)} train / {len(x_test)} test samples, "
              f"{x_train.shape[1]} features, {CLASSES} classes")
    clock.done("data")

    # 2. train the float twin and the quantized model, same data order and epochs
    torch.manual_seed(args.seed)  # initial weights
    float_model = make_float_model()
    float_loss = train(float_model, x_train, y_train, args.epochs, args.seed, "float")
    float_accuracy = accuracy(torch_logits(float_model, x_test), y_test)
    clock.log(f"train float MLP (plain torch nn.Linear/ReLU, no quantization): {args.epochs} epochs, "
              f"loss {float_loss:.4f}, test accuracy {float_accuracy:.4f}")
    # 3. HAWQ: per-layer Hessian traces -> sensitivity -> ILP under a BOPs budget
    hawq_result = choose_bits(float_model, x_train, y_train, args.alpha, out, clock)
    bits = hawq_result["bits"]
    clock.done("hawq")

    # 4. QAT with those bits (Brevitas, power-of-two scales), and uniform baselines trained the same way
    model, history = quantize_and_train(float_model, bits, x_train, y_train, args)
    brevitas_logits = torch_logits(model, x_test)
    brevitas_accuracy = accuracy(brevitas_logits, y_test)
    quant_bops = int(bits.costs(layer_shapes(float_model))["bops"])
    clock.log(f"QAT with HAWQ's bits: {history['epochs_run']} epochs, best weights after epoch {history['best_epoch'] + 1}, "
              f"test accuracy {brevitas_accuracy:.4f}, {quant_bops:,} BOPs")
    baselines = []
    for width in [int(b) for b in args.baselines.split(",") if b.strip()]:
        uniform = uniform_config(layer_shapes(float_model), width)
        baseline, _ = quantize_and_train(float_model, uniform, x_train, y_train, args)
        baselines.append({"kind": "uniform", "label": f"uniform {width}-bit",
                          "bops": int(uniform.costs(layer_shapes(float_model))["bops"]),
                          "accuracy": accuracy(torch_logits(baseline, x_test), y_test)})
        clock.log(f"QAT uniform {width}-bit: test accuracy {baselines[-1]['accuracy']:.4f}, {baselines[-1]['bops']:,} BOPs")
    points = baselines + [{"kind": "hawq", "label": f"HAWQ alpha={args.alpha}", "bops": quant_bops,
                           "accuracy": brevitas_accuracy}]
    plot_pareto([{**p, "mean": p["accuracy"], "min": p["accuracy"], "max": p["accuracy"]} for p in points],
                paths["accuracy_vs_bops.png"], reference=float_accuracy, title="digits: test accuracy vs BOPs (1 seed)")
    clock.done("qat")

    # 3. export to QONNX (self-checked against PyTorch)
    export_report = qonnx_ir.export(model, (1, IN_FEATURES), paths["model.onnx"], progress=lambda _: None)
    clock.log(f"export: {paths['model.onnx']} ({export_report.n_nodes} nodes, self-check max |onnx - torch| "
              f"= {export_report.max_abs_diff:.3g})")
    clock.done("export")

    # 4. lower to the hardware dialect
    with warnings.catch_warnings():  # qonnx's GemmToMatMul warns about every opset but 9; harmless here
        warnings.filterwarnings("ignore", message="The GemmToMatMul transformation only offers")
        lowered, context = lower(qonnx_ir.load(paths["model.onnx"]))
    qonnx_ir.save(lowered, paths["model.hw.onnx"])
    table = format_table(layer_costs(lowered))
    write_report(paths["lowering_report.md"], context.report.lines, table)
    clock.log(f"lower: {paths['model.hw.onnx']} ({len(lowered.graph.node)} hardware-dialect nodes, "
              f"{len(context.report.lines)} report lines in {paths['lowering_report.md']})")
    print(table)
    clock.done("lower")

    # 5. evaluate the three implementations on the test set
    qonnx_logits = next(iter(execute_qonnx(paths["model.onnx"], x_test.astype(np.float64)).values()))
    qonnx_accuracy = accuracy(qonnx_logits, y_test)
    hw_logits = np.asarray(qonnx_ir.execute(lowered, x_test.astype(np.float64)))
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
    clock.log(f"evaluate: {len(x_test)} test samples through PyTorch, qonnx (float64) and the integer "
              f"interpreter; saved {paths['test_x.npy'].name}, {paths['test_y_hw.npy'].name}")
    clock.done("evaluate")

    print(f"test accuracy  float torch MLP (no quantization)      {float_accuracy:.4f}")
    print(f"               (a) Brevitas model in PyTorch          {brevitas_accuracy:.4f}")
    print(f"               (b) QONNX graph, qonnx float64         {qonnx_accuracy:.4f}")
    print(f"               (c) lowered graph, integer interpreter {hw_accuracy:.4f}")
    if bit_exact:
        print(f"bit-exact: yes ({hw_logits.shape[0]} samples x {hw_logits.shape[1]} outputs) "
              "lowered == Brevitas in float64")
    else:
        print(f"bit-exact: NO, {mismatches} of {exact_logits.size} output elements differ from Brevitas in "
              f"float64 (max |difference| {max_difference:.3g}, lowered output shape {hw_logits.shape})")

    # 6. HLS projects for both backends, and their C++ run on the test set (C simulation)
    hls = {}
    for backend in ("vitis", "catapult"):
        project = generate(lowered, out / f"hls_{backend}", backend=backend, io="parallel", tb_inputs=x_test[:20])
        compiled = project.compile()
        csim_logits = project.predict(x_test.astype(np.float64))
        csim_mismatches = int(np.sum(csim_logits != hw_logits))
        hls[backend] = {"path": str(project.path), "compile_s": round(compiled.seconds, 2),
                        "bit_exact": csim_mismatches == 0, "mismatching_elements": csim_mismatches}
        clock.log(f"hls {backend}: {project.path}/ (g++ {compiled.seconds:.1f} s, headers from {compiled.headers}); "
                  f"C simulation == interpreter on {csim_logits.size} outputs: "
                  f"{'yes' if csim_mismatches == 0 else f'NO, {csim_mismatches} differ'}")
    clock.done("hls")

    summary = {
        "data": {"train_samples": len(x_train), "test_samples": len(x_test), "seed": args.seed},
        "hawq": {"alpha": args.alpha, "weights": dict(bits.weights), "activations": dict(bits.activations),
                 "bops": quant_bops, "traces": hawq_result["traces"], "baselines": baselines},
        "epochs": args.epochs,
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
    clock.log(f"done: {out}/ (summary.json, model.onnx, model.hw.onnx, lowering_report.md, test_*.npy, hls_vitis/, "
              "hls_catapult/)")
    return summary


if __name__ == "__main__":
    main()
