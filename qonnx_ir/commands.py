"""Verbs of the qonnx_ir package: export, info, run (entry points in pyproject.toml)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np

from .errors import QonnxError
from .files import temporary_beside


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
    try:
        with open(path, "rb") as stream:
            if stream.read(6) != b"\x93NUMPY":
                raise QonnxError(f"{path}: not a .npy file (save arrays with numpy.save)")
        array = np.load(path, allow_pickle=False)
        if not np.issubdtype(array.dtype, np.number):
            raise QonnxError(f"{path}: holds {array.dtype} values, not numbers")
        return array
    except FileNotFoundError:
        raise QonnxError(f"{path}: no such file") from None
    except (ValueError, OSError) as error:
        raise QonnxError(f"{path}: not a .npy array ({error})") from None


def write_npy(path: str, array: np.ndarray) -> None:
    """Write atomically: nothing half-written on failure."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = temporary_beside(target, ".npy")
    try:
        with open(temporary, "wb") as stream:
            np.save(stream, array)
        os.replace(temporary, target)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)


def run_command(args) -> None:
    from .interpreter import execute
    from .model import load

    model = load(args.model)
    x = read_npy(args.input)
    try:
        y = execute(model, x, codes=args.codes)
    except QonnxError as error:
        if error.node is None:  # a problem with the inputs, not the model
            raise QonnxError(f"{args.input}: {error}") from None
        raise
    write_npy(args.output, y)
    print(f"ran {len(y)} samples: {args.output} {tuple(y.shape)}")
