"""Export a PyTorch/Brevitas model to one self-contained QONNX file, and check it.

What `export` guarantees:

- The output is ONE .onnx file with every tensor embedded (no external ``.data`` file),
  produced by ``brevitas.export.export_qonnx`` and then qonnx's ``cleanup_model``
  (shapes inferred, constants folded except quantizers, readable tensor names).
- The file appears only when everything succeeded: it is written to a temporary file in
  the destination directory and renamed at the end, so a failure never leaves a
  half-written or unchecked output behind.
- Self-check: the cleaned graph is run with qonnx's ``execute_onnx`` (Quant nodes in
  numpy, standard ops through onnxruntime, float32) on ``check_samples`` seeded
  standard-normal inputs, and compared with the PyTorch model's float32 output on the same
  inputs. The max |onnx - torch| is reported; if it exceeds ``1e-4 * max(1, max|torch|)``
  the export raises CheckFailed and writes nothing. This checks the *export* (float
  against float); bit-exactness of the lowered hardware graph is the interpreter's job.

Heavy libraries (torch, brevitas, qonnx) are imported inside the functions: the `qonnx`
command imports this module to register the verb, and other verbs should not pay ~5 s.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.util
import inspect
import itertools
import math
import os
import pickle
import sys
import tempfile
import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from .errors import CheckFailed, QonnxError
from .files import check_output_file
from .limits import MAX_SAMPLE_ELEMENTS

if TYPE_CHECKING:
    import numpy as np
    import torch

RELATIVE_TOLERANCE = 1e-4
QUANTIZER_OPS = {"Quant", "IntQuant", "BipolarQuant", "FloatQuant", "Trunc"}
# brevitas.export warns about an optional CUDA kernel package at import; it is irrelevant here.
_IMPORT_NOISE = ("fast_hadamard_transform package not found", "brevitas.fx is deprecated")
_user_module_numbers = itertools.count()


@dataclass
class ExportReport:
    path: Path
    max_abs_diff: float | None  # None when the self-check was skipped (samples=0)
    samples: int
    n_nodes: int
    op_counts: dict[str, int]

    def summary(self) -> str:
        ops = ", ".join(f"{op} x{count}" for op, count in self.op_counts.items())
        check = (f"self-check on {self.samples} inputs: max |onnx - torch| = {self.max_abs_diff:.3g}"
                 if self.max_abs_diff is not None else "self-check skipped")
        return f"exported {self.path}: {self.n_nodes} nodes ({ops}), {check}"


def _one_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    text = " ".join(lines)
    return f"{type(error).__name__}: {text[:300]}" if text else type(error).__name__


@contextlib.contextmanager
def _quiet_brevitas_import():
    with warnings.catch_warnings():
        for message in _IMPORT_NOISE:
            warnings.filterwarnings("ignore", message=message)
        yield


def parse_input_shape(text: str) -> tuple[int, ...]:
    """'1,16' -> (1, 16); batch dimension first."""
    try:
        dims = tuple(int(part) for part in text.strip("()[] ").split(","))
    except ValueError:
        raise QonnxError(f"--input-shape {text!r} is not a comma-separated list of integers; "
                         "give the batch dimension first, e.g. 1,16 or 1,3,32,32") from None
    if any(dim <= 0 for dim in dims):
        raise QonnxError(f"--input-shape {text!r} has a dimension <= 0; every dimension must be positive")
    if len(dims) < 2:
        raise QonnxError(f"--input-shape {text!r} has no batch dimension: give it first, e.g. 1,{text.strip('()[] ')}")
    if math.prod(dims[1:]) > MAX_SAMPLE_ELEMENTS or dims[0] > 4096:
        raise QonnxError(f"--input-shape {text!r} is too large (at most {MAX_SAMPLE_ELEMENTS:,} values per sample, "
                         "batch at most 4096)")
    return dims


def _import_location(location: str):
    if location.endswith(".py") or "/" in location or os.sep in location:
        path = Path(location)
        if not path.is_file():
            raise QonnxError(f"model file '{path}' does not exist; give SPEC as path/to/file.py:factory")
        module_name = f"_qonnx_user_model_{next(_user_module_numbers)}"
        module_spec = importlib.util.spec_from_file_location(module_name, path)
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[module_name] = module  # dataclasses and pickling look modules up here
        # Let the file import its siblings, as `python file.py` would.
        sys.path.insert(0, str(path.resolve().parent))
        try:
            module_spec.loader.exec_module(module)
        except Exception as error:
            del sys.modules[module_name]
            raise QonnxError(f"cannot import '{path}': {_one_line(error)}") from error
        finally:
            sys.path.remove(str(path.resolve().parent))
        return module
    try:
        return importlib.import_module(location)
    except Exception as error:
        raise QonnxError(f"cannot import module '{location}' ({_one_line(error)}); "
                         "check PYTHONPATH or give path/to/file.py:factory") from error


def load_factory(spec: str, checkpoint: str | None = None) -> torch.nn.Module:
    """Build the model from SPEC ('path/to/file.py:factory' or 'package.module:factory').

    The factory is called with no arguments; a module-level nn.Module instance is also
    accepted. An optional checkpoint (a state_dict, or a dict holding one under
    'state_dict' / 'model_state_dict') is loaded strictly. Returns the model in eval mode.
    """
    import torch

    location, colon, name = spec.rpartition(":")
    if not colon or not location or not name:
        raise QonnxError(f"model spec {spec!r} has no factory; write path/to/file.py:factory "
                         "or package.module:factory")
    with _quiet_brevitas_import():
        module = _import_location(location)
        factory = getattr(module, name, None)
        if factory is None:
            raise QonnxError(f"'{location}' has no attribute '{name}'; name a function that returns the model")
        if isinstance(factory, torch.nn.Module):
            model = factory
        elif not callable(factory):
            raise QonnxError(f"'{spec}' is a {type(factory).__name__}, not a function returning the model")
        else:
            try:
                model = factory()
            except Exception as error:
                raise QonnxError(f"factory '{spec}' raised {_one_line(error)}; it must build the model "
                                 "with no arguments (--debug shows the traceback)") from error
    if not isinstance(model, torch.nn.Module):
        raise QonnxError(f"factory '{spec}' returned a {type(model).__name__}, not a torch.nn.Module")
    if checkpoint is not None:
        _load_checkpoint(model, checkpoint)
    return model.cpu().eval()


def _load_checkpoint(model: torch.nn.Module, checkpoint: str) -> None:
    import torch

    try:
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:  # weights_only=True refuses pickled classes: never run them
        raise QonnxError(f"checkpoint '{checkpoint}' holds pickled objects, not just tensors; "
                         "save it with torch.save(model.state_dict(), path)") from error
    except Exception as error:
        raise QonnxError(f"cannot read checkpoint '{checkpoint}' ({_one_line(error)}); "
                         "save it with torch.save(model.state_dict(), path)") from error
    for key in ("state_dict", "model_state_dict"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
            break
    if not isinstance(state, dict):
        raise QonnxError(f"checkpoint '{checkpoint}' holds a {type(state).__name__}, not a state_dict; "
                         "save it with torch.save(model.state_dict(), path)")
    # Brevitas leaves activation scales it has not initialised yet out of state_dict(), so
    # a key counts as missing only if the model itself would have saved it.
    keys_model_saves = set(model.state_dict())
    try:
        result = model.load_state_dict(state, strict=False)
    except RuntimeError as error:  # shape mismatches raise even with strict=False
        raise QonnxError(f"checkpoint '{checkpoint}' does not fit the model: {_one_line(error)}") from error
    missing = [key for key in result.missing_keys if key in keys_model_saves]
    if missing or result.unexpected_keys:
        examples = [f"missing {key}" for key in missing[:2]]
        examples += [f"unexpected {key}" for key in result.unexpected_keys[:2]]
        raise QonnxError(f"checkpoint '{checkpoint}' does not match the model ({len(missing)} missing, "
                         f"{len(result.unexpected_keys)} unexpected keys, e.g. {', '.join(examples)}); "
                         "was it saved from this factory's model?")


def _check_destination(path: str | os.PathLike) -> Path:
    destination = Path(path)
    if destination.is_dir() and not destination.is_symlink():
        raise QonnxError(f"output '{destination}' is a directory; give a file name such as model.onnx")
    if not destination.parent.is_dir():
        raise QonnxError(f"output directory '{destination.parent}' does not exist; create it first")
    return check_output_file(destination)


def _torch_outputs(model: torch.nn.Module, inputs: np.ndarray) -> list[np.ndarray]:
    """The model's output(s): one tensor, or a tuple of them (a model with several outputs)."""
    import torch
    from brevitas.quant_tensor import QuantTensor

    with torch.no_grad():
        output = model(torch.from_numpy(inputs))
    several = isinstance(output, (tuple, list)) and not isinstance(output, QuantTensor)
    arrays = []
    for item in output if several else [output]:
        if isinstance(item, QuantTensor):
            if several:  # torch.onnx would export its value, scale, zero point and bit width as four outputs
                raise QonnxError("the model returns a QuantTensor among several outputs: return its .value")
            item = item.value
        if not isinstance(item, torch.Tensor):
            raise QonnxError(f"the model returns a {type(item).__name__}; export supports a tensor or a tuple of "
                             "tensors")
        arrays.append(item.numpy())
    return arrays


def _onnx_outputs(model, inputs: np.ndarray) -> list[np.ndarray]:
    from qonnx.core.onnx_exec import execute_onnx
    from qonnx.transformation.change_batchsize import ChangeBatchSize
    from qonnx.transformation.infer_shapes import InferShapes

    if model.get_tensor_shape(model.graph.input[0].name)[0] != len(inputs):
        model = model.transform(ChangeBatchSize(len(inputs)))
        for output in model.graph.output[1:]:  # qonnx's ChangeBatchSize sets the first output's only
            output.type.tensor_type.shape.dim[0].dim_value = len(inputs)
        model = model.transform(InferShapes())
    result = execute_onnx(model, {model.graph.input[0].name: inputs})
    return [result[output.name] for output in model.graph.output]


def _in_batches(run: Callable, inputs: np.ndarray, batch: int, expected_shapes=None) -> list[np.ndarray]:
    """Run all inputs at once (fast); models that hard-code the batch size run batch by batch."""
    with contextlib.suppress(Exception):
        outputs = run(inputs)
        if expected_shapes is None or [output.shape for output in outputs] == expected_shapes:
            return outputs
    import numpy as np

    parts = [run(inputs[start:start + batch]) for start in range(0, len(inputs), batch)]
    return [np.concatenate(output) for output in zip(*parts)]


def _exporter_options() -> dict:
    import torch

    # torch's default, the dynamo exporter, takes ~3.5 s for a small MLP and prints progress;
    # the TorchScript one (dynamo=False) takes ~0.2 s and keeps module paths in node names.
    return {"dynamo": False} if "dynamo" in inspect.signature(torch.onnx.export).parameters else {}


def _embedded_tensors_only(proto) -> bool:
    import onnx

    tensors = list(proto.graph.initializer)
    tensors += [attribute.t for node in proto.graph.node for attribute in node.attribute if attribute.HasField("t")]
    return all(tensor.data_location != onnx.TensorProto.EXTERNAL for tensor in tensors)


def _export_and_clean(model: torch.nn.Module, example: np.ndarray):
    import onnx
    import torch
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.util.cleanup import cleanup_model

    with _quiet_brevitas_import():
        from brevitas.export import export_qonnx
    # Export into a private directory: whatever side files torch writes stay there, and
    # onnx.load pulls external data back into the proto before the directory is deleted.
    with tempfile.TemporaryDirectory(prefix="qonnx-export-") as scratch:
        raw_path = os.path.join(scratch, "raw.onnx")
        try:
            export_qonnx(model, torch.from_numpy(example), export_path=raw_path, **_exporter_options())
            raw = onnx.load(raw_path)
        except Exception as error:
            raise QonnxError(f"brevitas/torch export failed: {_one_line(error)}") from error
    try:
        return cleanup_model(ModelWrapper(raw))
    except Exception as error:
        raise QonnxError(f"qonnx cleanup of the exported graph failed: {_one_line(error)}") from error


def _write_atomically(proto, destination: Path) -> None:
    import onnx

    if not _embedded_tensors_only(proto):
        raise QonnxError("the exported graph still references external tensor data; cannot write one file")
    partial = destination.with_name(f".{destination.name}.{os.getpid()}.partial")
    try:
        onnx.save_model(proto, partial)  # no save_as_external_data: every tensor embedded
        os.replace(partial, destination)
    except ValueError as error:  # protobuf refuses messages over 2 GB
        raise QonnxError(f"cannot write one self-contained file ({_one_line(error)})") from error
    finally:
        partial.unlink(missing_ok=True)


def export(model: torch.nn.Module, input_shape, path, *, check_samples: int = 256, seed: int = 0,
           progress: Callable[[str], None] = print) -> ExportReport:
    """Export `model` (put in eval mode) for inputs of `input_shape`, batch first, to `path`.

    Raises QonnxError for bad input and CheckFailed if the self-check fails; `path` is
    written only on success. `check_samples=0` skips the self-check.
    """
    import numpy as np
    import torch

    destination = _check_destination(path)
    input_shape = tuple(int(dim) for dim in input_shape)
    batch = input_shape[0]
    model = model.eval()
    progress(f"exporting to {destination} (input shape {'x'.join(map(str, input_shape))}) ...")

    # Whole batches of the exported shape, so models with a hard-coded batch size work.
    n_inputs = math.ceil(max(check_samples, 1) / batch) * batch
    inputs = np.random.default_rng(seed).standard_normal((n_inputs, *input_shape[1:])).astype(np.float32)
    try:  # one forward pass first, so a wrong --input-shape gets its own message
        with torch.no_grad():
            model(torch.from_numpy(inputs[:batch]))
    except Exception as error:
        raise QonnxError(f"the model fails on an input of shape {input_shape} ({_one_line(error)}); "
                         "check --input-shape") from error

    cleaned = _export_and_clean(model, inputs[:batch])
    op_counts = dict(Counter(node.op_type for node in cleaned.graph.node).most_common())
    if not QUANTIZER_OPS & op_counts.keys():
        progress("warning: the model has no Brevitas quantizer; lowering to fixed point will need "
                 "quantized layers (QuantLinear, QuantIdentity, ...)")

    max_abs_diff = None
    if check_samples > 0:
        expected = _in_batches(lambda x: _torch_outputs(model, x), inputs, batch)
        if len(cleaned.graph.output) != len(expected):
            raise CheckFailed(f"the exported graph has {len(cleaned.graph.output)} outputs, the model returns "
                              f"{len(expected)}; {destination} was not written")
        try:
            got = _in_batches(lambda x: _onnx_outputs(cleaned, x), inputs, batch, [e.shape for e in expected])
        except Exception as error:
            raise QonnxError(f"qonnx cannot execute the exported graph: {_one_line(error)}") from error
        for name, ours, theirs in zip([o.name for o in cleaned.graph.output], got, expected):
            where = f" {name}" if len(expected) > 1 else ""
            if ours.shape != theirs.shape:
                raise CheckFailed(f"onnx output{where} shape {ours.shape} differs from torch's {theirs.shape}")
            difference = float(np.max(np.abs(ours.astype(np.float64) - theirs)))
            tolerance = RELATIVE_TOLERANCE * max(1.0, float(np.max(np.abs(theirs))))
            if not difference <= tolerance:  # also catches NaN
                raise CheckFailed(f"max |onnx - torch| = {difference:.3g}{' on output' + where if where else ''} "
                                  f"on {n_inputs} inputs exceeds {tolerance:.3g}; {destination} was not written")
            max_abs_diff = difference if max_abs_diff is None else max(max_abs_diff, difference)

    _write_atomically(cleaned.model, destination)
    report = ExportReport(destination, max_abs_diff, n_inputs if check_samples > 0 else 0,
                          len(cleaned.graph.node), op_counts)
    progress(report.summary())
    return report


EXAMPLE = """example:
  qonnx export examples/jet_tagger.py:make_model -o jet.onnx --input-shape 1,16
  qonnx export mypackage.models:tiny_mlp -o mlp.onnx --input-shape 1,16 --checkpoint mlp.pt

SPEC names a function that takes no arguments and returns the torch.nn.Module; the file is
imported as a module, so code under `if __name__ == "__main__":` does not run."""


def add_export_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = "Export a Brevitas model to one self-contained QONNX file and self-check it."
    parser.epilog = EXAMPLE
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("spec", metavar="SPEC", help="path/to/file.py:factory or package.module:factory")
    parser.add_argument("-o", "--output", required=True, help="the .onnx file to write")
    parser.add_argument("--input-shape", required=True, help="input shape, batch first, e.g. 1,16")
    parser.add_argument("--checkpoint", help="state_dict saved with torch.save(model.state_dict(), path)")
    parser.add_argument("--samples", type=int, default=256,
                        help="random inputs for the onnx-vs-torch self-check (0 skips it; default 256)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the self-check inputs")


def export_command(args: argparse.Namespace) -> None:
    # Cheap checks first: importing the model and brevitas takes seconds.
    input_shape = parse_input_shape(args.input_shape)
    if args.samples < 0:
        raise QonnxError(f"--samples {args.samples} is negative; give 0 to skip the self-check")
    _check_destination(args.output)
    if args.checkpoint is not None and not Path(args.checkpoint).is_file():
        raise QonnxError(f"checkpoint '{args.checkpoint}' does not exist")
    print(f"loading {args.spec} ...", flush=True)
    model = load_factory(args.spec, args.checkpoint)
    export(model, input_shape, args.output, check_samples=args.samples, seed=args.seed)
