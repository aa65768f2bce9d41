"""Verbs of the qonnx_ir package: export, info, run (entry points in pyproject.toml); reading
and writing the `.npy` arrays every verb takes."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np

from .errors import QonnxError
from .files import check_output_file, write_atomically
from .limits import MAX_INITIALIZER_ELEMENTS


def register_export(subparsers) -> None:
    from .brevitas_export import add_export_arguments, export_command

    parser = subparsers.add_parser("export", help="Brevitas model -> one self-checked QONNX file",
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    add_export_arguments(parser)
    parser.set_defaults(func=export_command)


def register_info(subparsers) -> None:
    from .cost import add_info_arguments, info_command

    parser = subparsers.add_parser("info", help="layer table: types, MACs, BOPs, weight bits",
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    add_info_arguments(parser)
    parser.set_defaults(func=info_command)


def register_run(subparsers) -> None:
    parser = subparsers.add_parser(
        "run", help="run a lowered model with the bit-exact interpreter",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example:\n  qonnx run model.hw.onnx --input x.npy -o y.npy",
    )
    parser.add_argument("model", help="hardware-dialect model (from `qonnx transform`)")
    parser.add_argument("--input", required=True, help="inputs as .npy, shape (N, ...) ")
    parser.add_argument("-o", "--output", required=True, help="where to write the outputs (.npy)")
    parser.add_argument("--codes", action="store_true", help="write integer codes instead of real values")
    parser.set_defaults(func=run_command)


def read_npy(path: str) -> np.ndarray:
    """A numeric array from a .npy file (never unpickled); one-line errors for anything else."""
    file = Path(path)
    if not file.is_file():
        raise QonnxError(f"{path}: no such file" if not file.exists() else f"{path}: not a regular file")
    try:
        with open(file, "rb") as stream:
            if stream.read(6) != b"\x93NUMPY":
                raise QonnxError(f"{path}: not a .npy file (save arrays with numpy.save)")
        mapped = np.load(file, mmap_mode="r", allow_pickle=False)  # reads the header only: no allocation yet
        if mapped.size > MAX_INITIALIZER_ELEMENTS:
            raise QonnxError(f"{path}: {mapped.size:,} values is more than {MAX_INITIALIZER_ELEMENTS:,}")
        array = np.array(mapped)
        del mapped
    except (ValueError, OSError, EOFError) as error:
        text = str(error).splitlines()[0] if str(error) else type(error).__name__
        if "allow_pickle" in text or "Object arrays" in text:
            text = "it holds Python objects, which would need unpickling"
        raise QonnxError(f"{path}: not a readable .npy array of numbers ({text})") from None
    if np.iscomplexobj(array):
        raise QonnxError(f"{path}: holds complex numbers; real inputs are expected")
    if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
        raise QonnxError(f"{path}: holds {array.dtype} values, not real numbers")
    return array


def checked_inputs(x: np.ndarray, where: str, shape: tuple[int, ...]) -> np.ndarray:
    """(N, *shape) inputs: a batch of samples with shape's number of values each, all finite."""
    features = math.prod(shape)
    if x.ndim == 0:
        raise QonnxError(f"{where}: a scalar, expected an array of shape (N, {', '.join(map(str, shape))})")
    if x.ndim == 1 and x.size == features:
        x = x[None, :]
    if len(x) == 0 or x.size == 0:
        raise QonnxError(f"{where}: holds no samples")
    if x.size != len(x) * features:
        raise QonnxError(f"{where}: {x.size // len(x)} values per sample (shape {tuple(x.shape)}), the model "
                         f"expects {features} (shape (N, {', '.join(map(str, shape))}))")
    if x.ndim > 2 and tuple(x.shape[1:]) != tuple(shape):
        raise QonnxError(f"{where}: samples of shape {tuple(x.shape[1:])}, the model expects {tuple(shape)}")
    if np.issubdtype(x.dtype, np.floating) and not np.all(np.isfinite(x)):
        raise QonnxError(f"{where}: holds NaN or infinite values")
    return x


def read_inputs(path: str, shape: tuple[int, ...]) -> np.ndarray:
    return checked_inputs(read_npy(path), path, shape)


def write_npy(path: str, array: np.ndarray) -> None:
    """Write atomically: nothing half-written on failure."""
    write_atomically(path, lambda stream: np.save(stream, array))


def run_command(args) -> None:
    from .dialect.graph import HwGraph
    from .interpreter import execute
    from .model import load

    check_output_file(args.output)
    graph = HwGraph(load(args.model))
    x = read_inputs(args.input, graph.nodes[0].input_shape)
    y = execute(graph, x, codes=args.codes)
    if isinstance(y, dict):
        raise QonnxError("the model has several outputs: `qonnx run` writes one (use the Python API)")
    write_npy(args.output, y)
    print(f"ran {len(y)} samples: {args.output} {tuple(y.shape)}")



