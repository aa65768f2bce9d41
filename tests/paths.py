"""Where the tests find things: the repository, and ../shared beside it (as in CI)."""

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED_MODELS = REPO.parent / "shared" / "models"
JET_TAGGER = SHARED_MODELS / "jet_tagging_qkeras_w6a6.onnx"
MNIST_TFC = SHARED_MODELS / "mnist_tfc_w2a2.onnx"
