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

import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn

EXAMPLES = str(Path(__file__).resolve().parent)
if EXAMPLES not in sys.path:  # _digits_common.py beside this file, also when it is imported by its path
    sys.path.append(EXAMPLES)
from _digits_common import (Stopwatch, accuracy, digits_parser, evaluate, load_data,  # noqa: E402
                            lower_and_report, on_one_thread, output_paths, parse_digits_args,
                            plot_accuracy_vs_bops, print_accuracies, quantize_and_train, simulate_hls,
                            torch_logits, train, train_baselines, write_summary)

INPUT_SHAPE, CLASSES, CHANNELS = (1, 1, 8, 8), 10, 8
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


def parse_args(argv):
    parser = digits_parser(__doc__, out="out/digits_cnn", epochs=30, epochs_help="float training and QAT epochs")
    parser.add_argument("--max-probes", type=int, default=256,
                        help="Hutchinson probes per layer at most (default 256; fewer if 2 %% is reached first)")
    parser.add_argument("--baselines", default="4,8",
                        help="uniform bit widths trained the same way for comparison ('' for none; default 4,8)")
    args = parse_digits_args(parser, argv)
    if args.max_probes < 2:
        parser.error("--max-probes must be at least 2")
    try:
        args.baselines = [int(b) for b in args.baselines.split(",") if b.strip()]
    except ValueError:
        parser.error(f"--baselines must be comma-separated bit widths, got {args.baselines!r}")
    return args


def main(argv=None) -> dict:
    """Run the whole example; returns the summary that is also written to summary.json."""
    return on_one_thread(_run, parse_args(argv))


def _run(args) -> dict:
    import qonnx_ir
    from qonnx_ir.cost import layer_costs

    clock = Stopwatch()
    out, paths = output_paths(args.out, ("bits.yaml", "traces.json", "traces.png", "accuracy_vs_bops.png",
                                         "model.onnx", "model.hw.onnx", "lowering_report.md", "test_x.npy",
                                         "test_y_hw.npy", "summary.json"))

    # 1. data
    x_train, x_test, y_train, y_test = load_data(args.seed, images=True)
    clock.log(f"data: sklearn digits as {x_train.shape[1]}x{x_train.shape[2]}x{x_train.shape[3]} images, "
              f"{len(x_train)} train / {len(x_test)} test, {CLASSES} classes")
    clock.done("data")

    # 2. the float CNN
    torch.manual_seed(args.seed)
    float_model = DigitsCnn()
    float_loss = train(float_model, x_train, y_train, args.epochs, args.seed, "float CNN")
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
    baselines = train_baselines(float_model, shapes, args.baselines, x_train, y_train, x_test, y_test, args, clock)
    plot_accuracy_vs_bops(baselines, args.alpha, quant_bops, brevitas_accuracy, float_accuracy,
                          paths["accuracy_vs_bops.png"], title="digits CNN: test accuracy vs BOPs (1 seed)")
    clock.done("qat")

    # 5. export to QONNX (self-checked against PyTorch)
    export_report = qonnx_ir.export(model, INPUT_SHAPE, paths["model.onnx"], progress=lambda _: None)
    qonnx_bops = sum(row.bops for row in layer_costs(qonnx_ir.load(paths["model.onnx"])))
    clock.log(f"export: {paths['model.onnx']} ({export_report.n_nodes} nodes, self-check max |onnx - torch| "
              f"= {export_report.max_abs_diff:.3g}); qonnx counts {qonnx_bops:,} BOPs, HAWQ's ILP {quant_bops:,}")
    clock.done("export")

    # 6. lower to the hardware dialect
    lowered, _, table = lower_and_report(paths, "digits CNN")
    clock.log(f"lower: {paths['model.hw.onnx']} ({len(lowered.graph.node)} hardware-dialect nodes)")
    print(table)
    clock.done("lower")

    # 7. the three implementations on the test set
    result = evaluate(model, lowered, paths, x_test, y_test)  # NCHW in, as PyTorch takes it
    hw_logits = result.hw_logits
    clock.done("evaluate")
    print_accuracies("CNN", float_accuracy, brevitas_accuracy, result)

    # 8. io_stream HLS projects for both backends, their C++ run on the test set
    hls = {}
    for backend in ("vitis", "catapult"):
        project, compiled, csim_logits = simulate_hls(lowered, out, backend, "stream", x_test)
        same_shape = csim_logits.shape == hw_logits.shape
        csim_mismatches = int(np.sum(csim_logits != hw_logits)) if same_shape else int(hw_logits.size)
        hls[backend] = {"path": str(project.path), "io": "stream", "compile_s": round(compiled.seconds, 2),
                        "bit_exact": csim_mismatches == 0, "mismatching_elements": csim_mismatches,
                        "compared_elements": int(hw_logits.size)}
        clock.log(f"hls {backend} (io stream): {project.path}/ (g++ {compiled.seconds:.1f} s, headers from "
                  f"{compiled.headers}); C simulation == interpreter on {hw_logits.size} outputs: "
                  f"{'yes' if csim_mismatches == 0 else f'NO, {csim_mismatches} differ'}")
    clock.done("hls")

    head = {
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
    }
    summary = write_summary(paths, head, float_accuracy, brevitas_accuracy, result, export_report, hls, clock)
    clock.log(f"done: {out}/ (summary.json, bits.yaml, traces.json, model.onnx, model.hw.onnx, lowering_report.md, "
              "test_*.npy, hls_vitis/, hls_catapult/)")
    return summary


if __name__ == "__main__":
    main()
