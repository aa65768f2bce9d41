"""hawq.apply and hawq.qat: a bit configuration becomes a Brevitas model whose lowered graph is
bit-exact with it (the HAWQ output feeds the exact firmware), and QAT trains it."""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pytest
import torch
from torch import nn

import qonnx_ir
from hawq.apply import apply_bits
from hawq.bitconfig import BitConfig
from hawq.layers import quantizable_layers
from hawq.qat import accuracy, train_qat
from hawq.quantizers import quantize_weight
from qonnx_ir.errors import QonnxError
from transforms import lower

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from brevitas.nn import QuantIdentity, QuantLinear, QuantReLU

WEIGHTS = {"0": 3, "2": 6, "4": 8}
ACTIVATIONS = {"0": 8, "2": 4, "4": 6}  # bits of each Linear's INPUT activation




def float_mlp(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 16), nn.ReLU(), nn.Linear(16, 5))


def random_inputs(n: int = 500, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-2.0, 2.0, (n, 16)).astype(np.float32)


def lowered_equals_brevitas_float64(model: nn.Module, x: np.ndarray, tmp_path) -> None:
    """Export, lower and run the integer interpreter; assert == Brevitas in float64, exactly."""
    path = tmp_path / "model.onnx"
    qonnx_ir.export(model, (1, x.shape[1]), path, progress=lambda _: None)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The GemmToMatMul transformation only offers")
        lowered, _ = lower(qonnx_ir.load(path))
    hardware = np.asarray(qonnx_ir.execute(lowered, x.astype(np.float64)))
    model64 = copy.deepcopy(model).double().eval()
    with torch.no_grad():
        reference = model64(torch.from_numpy(x.astype(np.float64)))
    reference = getattr(reference, "value", reference).numpy()
    assert hardware.shape == reference.shape
    assert np.array_equal(hardware, reference), f"max |difference| {np.abs(hardware - reference).max()}"
    assert len(np.unique(reference, axis=0)) > len(x) // 2  # not a degenerate, constant network


@pytest.fixture(scope="module")
def quantized():
    model = float_mlp()
    state = copy.deepcopy(model.state_dict())
    config = BitConfig(dict(WEIGHTS), dict(ACTIVATIONS))
    qmodel = apply_bits(model, config, calibration=random_inputs(256, seed=1)).eval()
    return model, state, qmodel


def test_configured_bit_widths(quantized):
    _, _, qmodel = quantized
    layers = quantizable_layers(qmodel)
    assert list(layers) == ["0", "2", "4"]  # the float model's names: the BitConfig applies
    for name, layer in layers.items():
        assert isinstance(layer, QuantLinear)
        assert int(layer.quant_weight().bit_width) == WEIGHTS[name]
    modules = dict(qmodel.named_children())
    assert list(modules) == ["input_quant", "0", "1", "2", "3", "4"]
    assert isinstance(modules["input_quant"], QuantIdentity)
    assert int(modules["input_quant"].act_quant.bit_width()) == ACTIVATIONS["0"]
    assert isinstance(modules["1"], QuantReLU) and isinstance(modules["3"], QuantReLU)
    assert int(modules["1"].act_quant.bit_width()) == ACTIVATIONS["2"]  # ReLU bits = next layer's input bits
    assert int(modules["3"].act_quant.bit_width()) == ACTIVATIONS["4"]
    for quantizer in (modules["input_quant"], modules["1"], modules["3"]):
        scale = float(quantizer.act_quant.scale().detach())
        assert scale == 2.0 ** round(np.log2(scale))  # powers of two everywhere


def test_weights_stay_close_to_the_float_weights(quantized):
    model, _, qmodel = quantized
    for name, layer in quantizable_layers(qmodel).items():
        w = dict(model.named_modules())[name].weight.detach()
        with torch.no_grad():
            qw = layer.quant_weight()
        scale, bits = float(qw.scale.detach()), WEIGHTS[name]
        assert scale == 2.0 ** round(np.log2(scale))
        assert torch.equal(qw.value, quantize_weight(w, bits))  # the sensitivity's Q_b is this quantizer
        limit = (2 ** (bits - 1) - 1) * scale  # narrow range: max |Wq| = P - s, P = 2**(bits-1) * s
        inside = w.abs() <= limit
        assert float((qw.value - w).abs()[inside].max()) <= scale / 2
        assert torch.equal(qw.value[~inside].abs(), torch.full_like(w[~inside], limit))  # clipped: saturated
        assert float(w.abs().max()) <= 2 ** (bits - 1) * scale  # P = 2**ceil(log2 max|w|)
        assert torch.equal(layer.bias.detach(), dict(model.named_modules())[name].bias.detach())


def test_float_model_is_not_modified(quantized):
    model, state, _ = quantized
    assert all(type(m) in (nn.Sequential, nn.Linear, nn.ReLU) for m in model.modules())
    assert all(torch.equal(value, state[key]) for key, value in model.state_dict().items())


def test_lowered_graph_is_bit_exact_with_the_brevitas_model(quantized, tmp_path):
    _, _, qmodel = quantized
    lowered_equals_brevitas_float64(qmodel, random_inputs(500), tmp_path)


def test_bit_exact_without_calibration_and_unsigned_input(tmp_path):
    """Runtime-statistics ReLU quantizers (the digits demo's), unsigned input in [0, 1)."""
    qmodel = apply_bits(float_mlp(1), BitConfig({"0": 2, "2": 4, "4": 7}, {"0": 5, "2": 2, "4": 8}),
                        input_signed=False, bias_bits=16).eval()
    x = np.random.default_rng(2).uniform(0.0, 1.0, (500, 16)).astype(np.float32)
    lowered_equals_brevitas_float64(qmodel, x, tmp_path)


class Custom(nn.Module):
    """Not a Sequential: forward calls children in registration order; BatchNorm after the ReLU
    and a Linear -> Linear pair mean two Linears get an input quantizer inside the layer."""

    def __init__(self):
        super().__init__()
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(16, 24)
        self.act = nn.ReLU()
        self.drop = nn.Dropout(0.1)
        self.bn = nn.BatchNorm1d(24)
        self.fc2 = nn.Linear(24, 12)
        self.head = nn.Sequential(nn.Identity(), nn.Linear(12, 5))

    def forward(self, x):
        return self.head(self.fc2(self.bn(self.drop(self.act(self.fc1(self.flatten(x)))))))


def test_custom_module_tree_keeps_names_and_is_bit_exact(tmp_path):
    torch.manual_seed(3)
    model = Custom()
    with torch.no_grad():
        model.bn.running_mean.uniform_(0.0, 1.0)
        model.bn.running_var.uniform_(0.5, 2.0)
    model.eval()
    config = BitConfig({"fc1": 6, "fc2": 4, "head.1": 5}, {"fc1": 8, "fc2": 6, "head.1": 7})
    x = random_inputs(500, seed=4)
    qmodel = apply_bits(model, config, calibration=x).eval()
    assert list(quantizable_layers(qmodel)) == ["fc1", "fc2", "head.1"]
    assert type(qmodel) is Custom and isinstance(qmodel.act, QuantReLU)
    for name in ("fc1", "fc2", "head.1"):  # no quantized activation in front: quantizer in the layer
        layer = qmodel.get_submodule(name)
        assert layer.input_quant.is_quant_enabled
        assert int(layer.input_quant.bit_width()) == config.activations[name]
    assert int(qmodel.act.act_quant.bit_width()) == config.activations["fc2"]
    lowered_equals_brevitas_float64(qmodel, x, tmp_path)


def test_bad_input_is_a_clear_error():
    config = BitConfig(dict(WEIGHTS), dict(ACTIVATIONS))
    with pytest.raises(QonnxError, match="no bits for layer"):
        apply_bits(float_mlp(), BitConfig({"0": 4}, {"0": 4}))
    with pytest.raises(QonnxError, match="does not have"):
        apply_bits(float_mlp(), BitConfig({**WEIGHTS, "9": 4}, {**ACTIVATIONS, "9": 4}))
    with pytest.raises(QonnxError, match="Tanh"):
        apply_bits(nn.Sequential(nn.Linear(16, 32), nn.Tanh(), nn.Linear(32, 16), nn.ReLU(), nn.Linear(16, 5)),
                   config)
    with pytest.raises(QonnxError, match="already a Brevitas layer"):
        apply_bits(apply_bits(float_mlp(), config), config)
    with pytest.raises(QonnxError, match=r"weights\[0\] = 1"):
        apply_bits(float_mlp(), BitConfig({**WEIGHTS, "0": 1}, dict(ACTIVATIONS)))


# -- QAT on scikit-learn's digits -----------------------------------------------------------

@pytest.fixture(scope="module")
def digits():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data = load_digits()
    x = (data.data / 16.0).astype(np.float32)
    y = data.target.astype(np.int64)
    return train_test_split(x, y, test_size=0.25, stratify=y, random_state=0)


def digits_float_model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 16), nn.ReLU(), nn.Linear(16, 10))


DIGITS_CONFIG = BitConfig({"0": 4, "2": 3, "4": 6}, {"0": 6, "2": 4, "4": 4})


def digits_quantized(x_train, seed: int = 0) -> nn.Module:
    return apply_bits(digits_float_model(seed), DIGITS_CONFIG, input_signed=False, calibration=x_train)


@pytest.fixture(scope="module")
def trained(digits):
    x_train, x_val, y_train, y_val = digits
    model = digits_quantized(x_train)
    before = accuracy(model, x_val, y_val)
    history = train_qat(model, (x_train, y_train), (x_val, y_val), epochs=5, lr=3e-3, batch_size=64,
                        progress=False)
    return model, before, history


def test_qat_improves_accuracy(trained, digits):
    model, before, history = trained
    _, x_val, _, y_val = digits
    after = accuracy(model, x_val, y_val)
    assert after > before + 0.3 and after > 0.8, (before, after)
    assert history["epochs_run"] == 5 and len(history["loss"]) == len(history["val_accuracy"]) == 5
    assert history["loss"][-1] < history["loss"][0]
    assert after == history["best_val_accuracy"] == max(history["val_accuracy"])
    assert not model.training


def test_trained_model_is_still_bit_exact(trained, digits, tmp_path):
    """The learned power-of-two scales and the trained weights still lower exactly."""
    model, _, _ = trained
    lowered_equals_brevitas_float64(model, digits[1][:500], tmp_path)


def test_early_stopping_stops_at_the_patience_and_restores_the_best(digits):
    x_train, x_val, y_train, y_val = digits
    model = digits_quantized(x_train)
    threads = torch.get_num_threads()
    # lr = 0: nothing ever improves on epoch 0, so training stops after epoch 0 + patience.
    history = train_qat(model, (x_train, y_train), (x_val, y_val), epochs=30, lr=0.0, patience=3, progress=False)
    assert history["best_epoch"] == 0 and history["stopped_early"]
    assert history["epochs_run"] == 4 and len(history["val_loss"]) == 4
    assert torch.get_num_threads() == threads

    # With training (a small, noisy run that is known to stop early, deterministically): it
    # stops `patience` epochs after the best one and restores the best epoch's weights.
    model = digits_quantized(x_train, seed=1)
    history = train_qat(model, (x_train[:150], y_train[:150]), (x_val, y_val), epochs=10, lr=5e-2,
                        batch_size=50, patience=2, progress=False)
    assert history["stopped_early"] and history["best_epoch"] < history["epochs_run"] - 1
    assert history["epochs_run"] == history["best_epoch"] + 1 + 2
    assert accuracy(model, x_val, y_val) == history["best_val_accuracy"] != history["val_accuracy"][-1]


def test_qat_is_deterministic_and_distillation_runs(digits):
    x_train, x_val, y_train, y_val = digits
    teacher = digits_float_model(5)
    train_qat(teacher, (x_train, y_train), epochs=3, lr=1e-2, progress=False)  # float model, no val data
    assert accuracy(teacher, x_val, y_val) > 0.7
    runs = []
    for _ in range(2):
        student = digits_quantized(x_train, seed=2)
        rng_before = torch.get_rng_state()
        runs.append(train_qat(student, (x_train, y_train), (x_val, y_val), epochs=2, lr=1e-2, teacher=teacher,
                              distill_weight=0.7, temperature=3.0, seed=11, progress=False))
        assert torch.equal(torch.get_rng_state(), rng_before)  # the caller's RNG is untouched
    assert runs[0]["loss"] == runs[1]["loss"] and runs[0]["val_accuracy"] == runs[1]["val_accuracy"]
    assert all(np.isfinite(runs[0]["loss"])) and runs[0]["val_accuracy"][1] > runs[0]["val_accuracy"][0]
    assert not teacher.training
    with pytest.raises(ValueError, match="teacher"):
        train_qat(student, (x_train, y_train), distill_weight=0.5, progress=False)


def test_distillation_loss_is_zero_against_an_identical_teacher(digits):
    """loss = (1-a) CE + a T^2 KL: with a = 1 and the student's own copy as teacher, KL = 0."""
    x_train, _, y_train, _ = digits
    student = digits_quantized(x_train, seed=3)
    history = train_qat(student, (x_train, y_train), epochs=1, lr=0.0, teacher=copy.deepcopy(student).eval(),
                        distill_weight=1.0, progress=False)
    assert abs(history["loss"][0]) < 1e-6 and history["best_epoch"] is None
