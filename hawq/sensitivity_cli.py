"""`qonnx hawq sensitivity SPEC --data data.npz -o traces.json`: per-layer Hessian traces and Omega.

SPEC names a model factory like `qonnx export` does (`file.py:factory` or
`package.module:factory`, optional --checkpoint); the model is usually the trained float
model. The data file is a .npz with arrays `x` (N, features), or (N, C, L) / (N, C, H, W)
for a CNN, and `y` (N,) class labels (or targets with --loss mse). A convolution's output
positions (its MACs in the traces file) come from the shape of `x`.
"""

from __future__ import annotations

import argparse

import numpy as np

from qonnx_ir.errors import QonnxError

EXAMPLE = """example:
  qonnx hawq sensitivity examples/digits_demo.py:make_float_model --checkpoint float.pt \\
      --data train.npz -o traces.json --plot traces.png
  qonnx hawq allocate traces.json --alpha 0.5 -o bits.yaml
"""


def build_parser() -> argparse.ArgumentParser:
    from qonnx_ir.cli import OneLineParser

    parser = OneLineParser(prog="qonnx hawq sensitivity", epilog=EXAMPLE,
                           formatter_class=argparse.RawDescriptionHelpFormatter,
                           description="Per-layer Hessian traces (Hutchinson) and the sensitivity Omega_l(b).")
    parser.add_argument("spec", help="model factory: path/to/file.py:factory or package.module:factory")
    parser.add_argument("--checkpoint", help="state_dict to load into the model")
    parser.add_argument("--data", required=True, help=".npz with arrays x and y")
    parser.add_argument("-o", "--output", required=True, help="traces.json to write")
    parser.add_argument("--loss", choices=("ce", "mse"), default="ce", help="cross-entropy (default) or mean squared error")
    parser.add_argument("--candidates", default="2,3,4,5,6,7,8", help="weight bit widths to score (default %(default)s)")
    parser.add_argument("--max-probes", type=int, default=256)
    parser.add_argument("--rel-tol", type=float, default=1e-2, help="stop a layer when std error / trace < this")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--plot", help="also write a PNG bar chart of the traces")
    return parser


def _read_data(path: str):
    try:
        with np.load(path, allow_pickle=False) as arrays:
            return np.asarray(arrays["x"], dtype=np.float32), np.asarray(arrays["y"])
    except FileNotFoundError:
        raise QonnxError(f"{path}: no such file") from None
    except KeyError as missing:
        raise QonnxError(f"{path}: needs arrays 'x' and 'y' (missing {missing})") from None
    except (ValueError, OSError) as error:
        raise QonnxError(f"{path}: not a .npz file ({error})") from None


def run(args) -> int:
    try:
        options = build_parser().parse_args(args.argv)
    except SystemExit as exit_:  # --help, or a usage error already printed in one line
        return int(exit_.code or 0)
    import torch

    from qonnx_ir.brevitas_export import load_factory

    from .hessian import hessian_traces
    from .sensitivity import sensitivities, write_traces_json

    try:
        candidates = sorted({int(b) for b in options.candidates.split(",") if b.strip()})
    except ValueError:
        raise QonnxError(f"--candidates must be bit widths like 2,4,8, got {options.candidates!r}") from None
    x, y = _read_data(options.data)
    model = load_factory(options.spec, options.checkpoint)
    if options.loss == "ce":
        loss_fn, target = torch.nn.CrossEntropyLoss(), torch.as_tensor(y, dtype=torch.long)
    else:
        loss_fn, target = torch.nn.MSELoss(), torch.as_tensor(y, dtype=torch.float32)
    traces = hessian_traces(model, loss_fn, (torch.as_tensor(x), target), max_probes=options.max_probes,
                            rel_tol=options.rel_tol, seed=options.seed)
    scores = sensitivities(model, traces, candidates)
    meta = {"spec": options.spec, "data": options.data, "samples": len(x), "loss": options.loss,
            "max_probes": options.max_probes, "rel_tol": options.rel_tol, "seed": options.seed}
    write_traces_json(options.output, model, traces, scores, meta, sample=x[:1])
    for name, estimate in traces.items():
        print(f"{name:24s} Tr(H) = {estimate.trace:11.4g} +- {estimate.std_error:.2g}  ({estimate.probes} probes, "
              f"{estimate.n_params} weights)")
    if options.plot:
        from .plots import plot_traces

        plot_traces(traces, options.plot)
        print(f"wrote {options.plot}")
    print(f"wrote {options.output}")
    return 0
