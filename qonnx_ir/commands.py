"""Verbs of the qonnx_ir package: export, info, run (entry points in pyproject.toml); reading
and writing the `.npy` arrays every verb takes."""

from __future__ import annotations

import argparse
import math
import zipfile
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
        epilog="examples:\n  qonnx run model.hw.onnx --input x.npy -o y.npy\n"
               "  qonnx run two_heads.hw.onnx --input x.npy -o y.npz     # several outputs: one .npz\n\n"
               + OUTPUT_FILES,
    )
    parser.add_argument("model", help="hardware-dialect model (from `qonnx transform`)")
    parser.add_argument("--input", required=True, help="inputs as .npy, shape (N, ...) ")
    parser.add_argument("-o", "--output", required=True,
                        help="where to write the outputs: .npy (one output) or .npz (every output, by name)")
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


OUTPUT_FILES = """-o y.npy writes the output of a model with one output, as an array (N, ...).
-o y.npz writes every graph output, one array per output named as the model names it
(numpy.load("y.npz")["logits"]), in the graph's order: a model with several outputs needs it."""


def check_outputs_file(path: str, outputs: list[str]) -> None:
    """-o of a verb that writes a model's outputs (see OUTPUT_FILES), checked before any work."""
    check_output_file(path)
    if len(outputs) > 1 and not str(path).endswith(".npz"):
        raise QonnxError(f"the model has {len(outputs)} outputs ({', '.join(outputs)}): give -o a .npz file, "
                         "which holds one array per output by name (e.g. -o y.npz)")


def write_outputs(path: str, outputs: dict[str, np.ndarray]) -> str:
    """Write {graph output name: values} as OUTPUT_FILES says (atomically); returns what was written."""
    if str(path).endswith(".npz"):
        write_atomically(path, lambda stream: _write_npz(stream, outputs))
        return f"{path}: " + ", ".join(f"{name} {tuple(values.shape)}" for name, values in outputs.items())
    (values,) = outputs.values()
    write_npy(path, values)
    return f"{path} {tuple(values.shape)}"


def _write_npz(stream, arrays: dict[str, np.ndarray]) -> None:
    """numpy.savez, without its keyword arguments in the way of the names (a name is a member file)."""
    with zipfile.ZipFile(stream, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
        for name, values in arrays.items():
            with archive.open(f"{name}.npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.asanyarray(values), allow_pickle=False)


def run_command(args) -> None:
    from .dialect.graph import HwGraph
    from .interpreter import by_output, execute
    from .model import load

    check_output_file(args.output)
    graph = HwGraph(load(args.model))
    check_outputs_file(args.output, graph.outputs)
    x = read_inputs(args.input, graph.nodes[0].input_shape)
    written = write_outputs(args.output, by_output(graph, execute(graph, x, codes=args.codes)))
    print(f"ran {len(x)} samples: {written}")
