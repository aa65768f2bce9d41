"""Does HAWQ's mixed precision beat uniform precision at the same BOPs? Measured on sklearn's digits.

    python examples/digits_hawq_study.py [--out out/digits_hawq] [--seeds 3] [--epochs 30]

1. data    -- sklearn's bundled 8x8 digits (1797 images, offline), pixels scaled to [0, 1],
              stratified split 60 / 20 / 20 % train / validation / test (seed 0).
2. float   -- a float MLP 64 -> 32 -> 16 -> 10 (ReLU), Adam, early stopping on validation.
3. traces  -- Hutchinson estimates of each layer's Hessian trace on the whole training set
              (hawq.hessian.hessian_traces), then the HAWQ sensitivities.
4. budgets -- three BOPs budgets: the BOPs of the uniform 3-, 4- and 6-bit configurations
              (w = a = b everywhere, the model input included).
5. sweep   -- hawq.pareto.pareto_sweep: at each budget the ILP's configuration (candidates
              2..8 bits, input activation bits = weight bits, as in the jet-tagging study),
              and the uniform 2, 3, 4, 6, 8-bit baselines, each calibrated and trained with
              the SAME QAT (Adam, lr, epochs, early stopping) for every seed; test accuracy
              mean, std, min and max over the seeds.

Nothing is tuned for either side: the same float model, calibration, QAT and seeds for all.
The seed changes the QAT mini-batch order only. Whatever the table says is the result.

Outputs under --out: pareto.md, pareto.csv, pareto.png, traces.png, traces.json,
bits_*.yaml, summary.json. The table is also printed.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

SPLIT_SEED = 0
FLOAT_EPOCHS, FLOAT_LR, FLOAT_PATIENCE = 150, 3e-3, 20
QAT_LR, QAT_PATIENCE, BATCH_SIZE = 1e-3, 10, 64
CANDIDATES = (2, 3, 4, 5, 6, 7, 8)
UNIFORM_BITS = (2, 3, 4, 6, 8)
BUDGET_BITS = (3, 4, 6)  # budgets = BOPs of these uniform configurations
TARGET_SECONDS = 360


def load_splits():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float32)
    y = digits.target.astype(np.int64)
    x_rest, x_test, y_rest, y_test = train_test_split(x, y, test_size=0.2, stratify=y, random_state=SPLIT_SEED)
    x_train, x_val, y_train, y_val = train_test_split(x_rest, y_rest, test_size=0.25, stratify=y_rest,
                                                      random_state=SPLIT_SEED)
    return (x_train, y_train), (x_val, y_val), (x_test, y_test)


def float_mlp(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 16), nn.ReLU(), nn.Linear(16, 10))


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="out/digits_hawq", help="output folder (default: out/digits_hawq)")
    parser.add_argument("--seeds", type=int, default=3, help="QAT seeds per configuration (default: 3)")
    parser.add_argument("--epochs", type=int, default=30,
                        help=f"maximum QAT epochs, early stopping patience {QAT_PATIENCE} (default: 30)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    if args.seeds < 1 or args.epochs < 1:
        parser.error("--seeds and --epochs must be at least 1")
    return args


def log(start: float, message: str) -> None:
    print(f"[{time.perf_counter() - start:6.1f}s] {message}", flush=True)


def main(argv=None) -> dict:
    args = parse_args(argv)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny MLP: one thread is fastest on a shared 2-core machine
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # brevitas' optional-package warnings
            return run(args)
    finally:
        torch.set_num_threads(threads)


def run(args) -> dict:
    from hawq.hessian import hessian_traces
    from hawq.layers import layer_shapes
    from hawq.pareto import comparison_summary, comparison_table, markdown_table, pareto_sweep, uniform_config
    from hawq.qat import accuracy, train_qat

    start = time.perf_counter()
    out = Path(args.out)
    progress = not args.no_progress
    train, val, test = load_splits()
    log(start, f"data: sklearn digits, {len(train[0])} train / {len(val[0])} val / {len(test[0])} test")

    model = float_mlp(SPLIT_SEED)
    history = train_qat(model, train, val, epochs=FLOAT_EPOCHS, lr=FLOAT_LR, batch_size=BATCH_SIZE,
                        patience=FLOAT_PATIENCE, seed=SPLIT_SEED, progress=progress)
    float_accuracy = accuracy(model, *test)
    log(start, f"float MLP 64-32-16-10: {history['epochs_run']} epochs, test accuracy {float_accuracy:.4f}")

    data = (torch.from_numpy(train[0]), torch.from_numpy(train[1]))
    traces = hessian_traces(model, nn.CrossEntropyLoss(), data, progress=progress)
    log(start, "Hessian traces (training set): " + ", ".join(
        f"layer {name}: {t.trace:.3g} ± {t.std_error:.2g} ({t.probes} probes, Tr/n {t.mean_diagonal:.3g})"
        for name, t in traces.items()))

    layers = layer_shapes(model)
    budgets = [uniform_config(layers, bits).costs(layers)["bops"] for bits in BUDGET_BITS]
    log(start, "budgets (BOPs of uniform " + ", ".join(f"{b}-bit" for b in BUDGET_BITS) + "): "
        + ", ".join(f"{b:,}" for b in budgets))
    seeds = list(range(args.seeds))
    setup = {"data": "sklearn digits (real, offline), pixels/16, stratified 60/20/20 split (seed 0)",
             "model": "float MLP 64-32-16-10 (ReLU), trained once, shared by every configuration",
             "float training": f"Adam lr {FLOAT_LR}, batch {BATCH_SIZE}, {history['epochs_run']} epochs",
             "QAT": f"Adam lr {QAT_LR}, batch {BATCH_SIZE}, at most {args.epochs} epochs, early stopping "
                    f"patience {QAT_PATIENCE} on validation accuracy, best epoch restored",
             "input": "unsigned, range [0, 1), bits = the first layer's activation bits",
             "budgets": ", ".join(f"{b:,} BOPs (= uniform {bits}-bit)" for b, bits in zip(budgets, BUDGET_BITS))}
    rows = pareto_sweep(model, train, val, test, traces=traces, budgets=budgets, candidates=CANDIDATES,
                        act_rule=0, uniform_bits=UNIFORM_BITS, seeds=seeds, epochs=args.epochs, lr=QAT_LR,
                        calibration=train[0], out_dir=out, progress=progress,
                        apply_options={"input_signed": False, "input_range": 1.0},
                        qat_options={"batch_size": BATCH_SIZE, "patience": QAT_PATIENCE}, setup=setup)
    seconds = time.perf_counter() - start
    log(start, f"sweep done: {len(rows)} configurations x {len(seeds)} seeds")

    print()
    print(f"float model test accuracy {float_accuracy:.4f}; {len(seeds)} seeds, at most {args.epochs} QAT epochs "
          f"(defaults 3 and 30, chosen to stay under {TARGET_SECONDS // 60} minutes on 2 shared cores; "
          "more may change the numbers)")
    print(f"test set: {len(test[0])} images, so one image is {1 / len(test[0]):.4f} of accuracy")
    print(markdown_table(rows))
    print()
    print(comparison_table(rows))
    print(comparison_summary(rows))
    print()
    if seconds > TARGET_SECONDS:
        print(f"note: took {seconds:.0f} s, over the {TARGET_SECONDS} s target; reduce --epochs or --seeds")
    print(f"outputs: {out}/pareto.md, pareto.csv, pareto.png, traces.png, traces.json, bits_*.yaml "
          f"(total {seconds:.0f} s)")
    summary = {"float_accuracy": float_accuracy, "budgets_bops": budgets, "seeds": seeds, "epochs": args.epochs,
               "traces": {name: {"trace": t.trace, "std_error": t.std_error, "probes": t.probes}
                          for name, t in traces.items()},
               "rows": [{k: v for k, v in row.items() if k != "models"} for row in rows],
               "seconds": round(seconds, 1)}
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


if __name__ == "__main__":
    main(sys.argv[1:])
