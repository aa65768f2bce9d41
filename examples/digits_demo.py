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

import sys
import warnings
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


def parse_args(argv):
    parser = digits_parser(__doc__, out="out/demo", epochs=40, epochs_help="training epochs")
    parser.add_argument("--baselines", default="4,8", help="uniform bit widths trained the same way for comparison")
    return parse_digits_args(parser, argv)


def main(argv=None) -> dict:
    """Run the whole demo; returns the summary that is also written to summary.json."""
    return on_one_thread(_run, parse_args(argv))


def _run(args) -> dict:
    import qonnx_ir
    from hawq import layer_shapes

    clock = Stopwatch()
    out, paths = output_paths(args.out, ("model.onnx", "model.hw.onnx", "lowering_report.md", "test_x.npy",
                                         "test_y_hw.npy", "summary.json", "bits.yaml", "traces.png",
                                         "accuracy_vs_bops.png"))

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
    shapes = layer_shapes(float_model)
    quant_bops = int(bits.costs(shapes)["bops"])
    clock.log(f"QAT with HAWQ's bits: {history['epochs_run']} epochs, best weights after epoch {history['best_epoch'] + 1}, "
              f"test accuracy {brevitas_accuracy:.4f}, {quant_bops:,} BOPs")
    widths = [int(b) for b in args.baselines.split(",") if b.strip()]
    baselines = train_baselines(float_model, shapes, widths, x_train, y_train, x_test, y_test, args, clock)
    plot_accuracy_vs_bops(baselines, args.alpha, quant_bops, brevitas_accuracy, float_accuracy,
                          paths["accuracy_vs_bops.png"], title="digits: test accuracy vs BOPs (1 seed)")
    clock.done("qat")

    # 3. export to QONNX (self-checked against PyTorch)
    export_report = qonnx_ir.export(model, (1, IN_FEATURES), paths["model.onnx"], progress=lambda _: None)
    clock.log(f"export: {paths['model.onnx']} ({export_report.n_nodes} nodes, self-check max |onnx - torch| "
              f"= {export_report.max_abs_diff:.3g})")
    clock.done("export")

    # 4. lower to the hardware dialect
    lowered, context, table = lower_and_report(paths, "digits MLP")
    clock.log(f"lower: {paths['model.hw.onnx']} ({len(lowered.graph.node)} hardware-dialect nodes, "
              f"{len(context.report.lines)} report lines in {paths['lowering_report.md']})")
    print(table)
    clock.done("lower")

    # 5. evaluate the three implementations on the test set
    result = evaluate(model, lowered, paths, x_test, y_test)
    hw_logits = result.hw_logits
    clock.log(f"evaluate: {len(x_test)} test samples through PyTorch, qonnx (float64) and the integer "
              f"interpreter; saved {paths['test_x.npy'].name}, {paths['test_y_hw.npy'].name}")
    clock.done("evaluate")
    print_accuracies("MLP", float_accuracy, brevitas_accuracy, result)

    # 6. HLS projects for both backends, and their C++ run on the test set (C simulation)
    hls = {}
    for backend in ("vitis", "catapult"):
        project, compiled, csim_logits = simulate_hls(lowered, out, backend, "parallel", x_test)
        csim_mismatches = int(np.sum(csim_logits != hw_logits))
        hls[backend] = {"path": str(project.path), "compile_s": round(compiled.seconds, 2),
                        "bit_exact": csim_mismatches == 0, "mismatching_elements": csim_mismatches}
        clock.log(f"hls {backend}: {project.path}/ (g++ {compiled.seconds:.1f} s, headers from {compiled.headers}); "
                  f"C simulation == interpreter on {csim_logits.size} outputs: "
                  f"{'yes' if csim_mismatches == 0 else f'NO, {csim_mismatches} differ'}")
    clock.done("hls")

    head = {
        "data": {"train_samples": len(x_train), "test_samples": len(x_test), "seed": args.seed},
        "hawq": {"alpha": args.alpha, "weights": dict(bits.weights), "activations": dict(bits.activations),
                 "bops": quant_bops, "traces": hawq_result["traces"], "baselines": baselines},
        "epochs": args.epochs,
    }
    summary = write_summary(paths, head, float_accuracy, brevitas_accuracy, result, export_report, hls, clock)
    clock.log(f"done: {out}/ (summary.json, model.onnx, model.hw.onnx, lowering_report.md, test_*.npy, hls_vitis/, "
              "hls_catapult/)")
    return summary


if __name__ == "__main__":
    main()
