"""Loading and saving models: qonnx's ModelWrapper, plus the checks an untrusted file needs.

`load` accepts the legacy op domains (`onnx.brevitas`, `finn.custom_op.general`, which
ModelWrapper normalises) and old opsets, rejects what we cannot trust or handle with a
one-line QonnxError, and never changes the graph otherwise.
"""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path

import onnx
from onnx import ModelProto
from qonnx.core.modelwrapper import ModelWrapper

from .errors import QonnxError
from .files import temporary_beside

# Names in exports look like "/fc1/MatMul", "onnx::MatMul_12", "features.3.weight",
# "dense/BiasAdd:0". Anything else (shell or C metacharacters, path traversal) is refused.
_SAFE_NAME = re.compile(r"[A-Za-z0-9_./:\-\[\]#@+ ]*")


def check_name(name: str, what: str) -> None:
    if not _SAFE_NAME.fullmatch(name):
        bad = sorted({c for c in name if not _SAFE_NAME.fullmatch(c)})
        raise QonnxError(f"{what} name {name!r} contains {''.join(bad)!r}: rename it (allowed: letters, digits, space and _ . / : - [ ] # @ +)")
    if ".." in name.split("/") or name.startswith("../") or "/../" in name or name.endswith("/.."):
        raise QonnxError(f"{what} name {name!r} contains a path traversal '..': rename it")


def _check_names(model: ModelProto) -> None:
    graph = model.graph
    for node in graph.node:
        check_name(node.name, "node")
        for tensor in list(node.input) + list(node.output):
            check_name(tensor, f"tensor of node {node.name!r}:")
    for value in list(graph.input) + list(graph.output) + list(graph.initializer):
        check_name(value.name, "tensor")


def load(source: str | os.PathLike | ModelProto | ModelWrapper) -> ModelWrapper:
    """A ModelWrapper for a path, a ModelProto or a ModelWrapper (copied, never aliased)."""
    if isinstance(source, ModelWrapper):
        proto = ModelProto()
        proto.CopyFrom(source.model)
    elif isinstance(source, ModelProto):
        proto = ModelProto()
        proto.CopyFrom(source)
    else:
        path = Path(source)
        if not path.is_file():
            raise QonnxError(f"{path}: no such file")
        try:
            proto = onnx.load(str(path))
        except Exception as error:  # protobuf raises several unrelated types
            raise QonnxError(f"{path}: not an ONNX model ({type(error).__name__})") from None
        if not proto.graph.node:
            raise QonnxError(f"{path}: not an ONNX model (no graph nodes)")
    _check_names(proto)
    with warnings.catch_warnings():  # legacy domains are normalised on purpose; no need to shout
        warnings.filterwarnings("ignore", message="Some old-style domain attributes")
        return ModelWrapper(proto)


def save(model: ModelWrapper | ModelProto, path: str | os.PathLike) -> Path:
    """Write atomically: a temporary file beside the target, renamed when complete."""
    proto = model.model if isinstance(model, ModelWrapper) else model
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = temporary_beside(path, ".tmp")
    try:
        onnx.save(proto, temporary)
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)
    return path
