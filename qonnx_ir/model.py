"""Loading and saving models: qonnx's ModelWrapper, plus the checks an untrusted file needs.

`load` accepts the legacy op domains (`onnx.brevitas`, `finn.custom_op.general`, which
ModelWrapper normalises) and old opsets, validates everything it can before any work
starts (`qonnx_ir.validate`), and never changes the graph otherwise.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import onnx
from onnx import ModelProto
from qonnx.core.modelwrapper import ModelWrapper

from .errors import QonnxError
from .files import check_output_file, temporary_beside
from .validate import validate_model

MAX_FILE_BYTES = 2**31 - 1  # protobuf's limit for one message


def load(source: str | os.PathLike | ModelProto | ModelWrapper, *, validate: bool = True) -> ModelWrapper:
    """A ModelWrapper for a path, a ModelProto or a ModelWrapper (copied, never aliased)."""
    where = "the model"
    if isinstance(source, ModelWrapper):
        proto = ModelProto()
        proto.CopyFrom(source.model)
    elif isinstance(source, ModelProto):
        proto = ModelProto()
        proto.CopyFrom(source)
    else:
        path = Path(source)
        where = str(path)
        if not path.is_file():
            raise QonnxError(f"{path}: no such file" if not path.exists() else f"{path}: not a regular file")
        if path.stat().st_size > MAX_FILE_BYTES:
            raise QonnxError(f"{path}: larger than 2 GB, which one ONNX file cannot be")
        try:
            proto = onnx.load(str(path), load_external_data=False)
        except Exception as error:  # protobuf raises several unrelated types
            raise QonnxError(f"{path}: not an ONNX model ({type(error).__name__})") from None
        if not proto.graph.node:
            raise QonnxError(f"{path}: not an ONNX model (no graph nodes)")
    if validate:
        validate_model(proto, where)
    with warnings.catch_warnings():  # legacy domains are normalised on purpose; no need to shout
        warnings.filterwarnings("ignore", message="Some old-style domain attributes")
        return ModelWrapper(proto)


def save(model: ModelWrapper | ModelProto, path: str | os.PathLike) -> Path:
    """Write atomically: a temporary file beside the target, renamed when complete."""
    proto = model.model if isinstance(model, ModelWrapper) else model
    path = check_output_file(path)
    temporary = temporary_beside(path, ".tmp")
    try:
        onnx.save(proto, temporary)
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)
    return path
