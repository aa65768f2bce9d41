"""HAWQ on CNNs after the traces: layer shapes and BOPs (== qonnx's inference cost), the traces file,
and apply_bits building Brevitas CNNs whose lowered graphs equal them bit for bit.

Exactness is checked the way tests/transforms/test_cnn_matrix.py checks the CNN zoo: export with
qonnx_ir.export, lower with transforms.lower, run qonnx_ir.execute on NCHW float64 arrays, and
compare with np.array_equal against the Brevitas model evaluated in float64.
"""

from __future__ import annotations

import copy
import json
import math
import warnings

import numpy as np
import pytest
import torch
from torch import nn

import qonnx_ir
from hawq import BitConfig, allocate_bits, apply_bits, layer_shapes, sensitivities, train_qat
from hawq.cli import read_traces
from hawq.layers import LayerShape, quantizable_layers
from hawq.quantizers import quantize_weight
from hawq.sensitivity import write_traces_json
from qonnx_ir.cli import main
from qonnx_ir.cost import layer_costs
from qonnx_ir.errors import QonnxError
from transforms import lower

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from brevitas.nn import QuantConv1d, QuantConv2d, QuantIdentity, QuantLinear, QuantReLU

SAMPLES = 600


def randomize_batchnorm(model: nn.Module, seed: int, negative: bool = True) -> nn.Module:
    """Running statistics and affine parameters near the real ones; `negative`: some scales < 0."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                width = module.num_features
                module.running_mean.copy_(torch.rand(width, generator=gen) * 0.6 - 0.3)
                module.running_var.copy_(torch.rand(width, generator=gen) * 1.5 + 0.5)
                sign = torch.where(torch.rand(width, generator=gen) < (0.2 if negative else 0.0), -1.0, 1.0)
                module.weight.copy_(sign * (torch.rand(width, generator=gen) + 0.5))
                module.bias.copy_(torch.rand(width, generator=gen) * 0.4 - 0.2)
    return model.eval()


def sequential_cnn() -> nn.Module:
    """conv + BatchNorm2d + ReLU + max pool, conv + ReLU + average pool, a dense head."""
    torch.manual_seed(0)
    return randomize_batchnorm(nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(4, 6, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2), nn.Flatten(), nn.Linear(24, 5)), 1)


def pooled_cnn() -> nn.Module:
    """No padding, a BatchNorm after the pool (the next conv requantizes, signed), a grouped 1x1 conv,
    a global average over 3 x 3 (1/9 is no power of two: the Linear requantizes, unsigned)."""
    torch.manual_seed(1)
    return randomize_batchnorm(nn.Sequential(
        nn.Conv2d(2, 4, 3), nn.ReLU(), nn.MaxPool2d(2), nn.BatchNorm2d(4),
        nn.Conv2d(4, 6, 1, groups=2, bias=False), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Dropout(0.2), nn.Linear(6, 5)), 2, negative=False)


def cnn_1d() -> nn.Module:
    torch.manual_seed(2)
    return randomize_batchnorm(nn.Sequential(
        nn.Conv1d(2, 4, 3, padding=1), nn.BatchNorm1d(4), nn.ReLU(), nn.MaxPool1d(2),
        nn.Conv1d(4, 4, 3, stride=2, padding=1), nn.ReLU(), nn.AvgPool1d(2), nn.Flatten(), nn.Linear(8, 3)), 3)


class JoinedCnn(nn.Module):
    """Two conv blocks joined by a concatenation or a residual add, then a dense head (not a Sequential)."""

    def __init__(self, join: str):
        super().__init__()
        self.join = join
        self.conv1, self.bn1, self.relu1, self.pool1 = (nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8),
                                                        nn.ReLU(), nn.MaxPool2d(2))
        self.conv2, self.bn2, self.relu2 = nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU()
        self.pool2 = nn.MaxPool2d(2)
        self.fc = nn.Linear((16 if join == "cat" else 8) * 4, 10)

    def forward(self, x):
        p = self.pool1(self.relu1(self.bn1(self.conv1(x))))
        b = self.relu2(self.bn2(self.conv2(p)))
        joined = torch.cat([p, b], dim=1) if self.join == "cat" else p + b
        return self.fc(torch.flatten(self.pool2(joined), 1))


def joined_cnn(join: str) -> nn.Module:
    torch.manual_seed(3)
    return randomize_batchnorm(JoinedCnn(join), 4)


# name, factory, input shape (batch first), weight bits, input activation bits, apply_bits options
MODELS = {
    "sequential": (sequential_cnn, (1, 1, 8, 8), {"0": 4, "4": 5, "8": 6}, {"0": 8, "4": 4, "8": 5}, {}),
    "pooled": (pooled_cnn, (1, 2, 8, 8), {"0": 6, "4": 3, "9": 4}, {"0": 6, "4": 5, "9": 6}, {}),
    "conv1d": (cnn_1d, (1, 2, 16), {"0": 5, "4": 4, "8": 6}, {"0": 7, "4": 3, "8": 4}, {}),
    "concat": (lambda: joined_cnn("cat"), (1, 1, 8, 8), {"conv1": 4, "conv2": 5, "fc": 6},
               {"conv1": 8, "conv2": 4, "fc": 4}, {"input_signed": False, "input_range": 1.0}),
    "add": (lambda: joined_cnn("add"), (1, 1, 8, 8), {"conv1": 4, "conv2": 5, "fc": 6},
            {"conv1": 8, "conv2": 4, "fc": 6}, {"input_signed": False, "input_range": 1.0}),
}
# MACs per sample written out by hand: H_out * W_out * K_h * K_w * C_in * C_out / groups
EXPECTED_MACS = {
    "sequential": {"0": 8 * 8 * 9 * 1 * 4, "4": 4 * 4 * 9 * 4 * 6, "8": 24 * 5},
    "pooled": {"0": 6 * 6 * 9 * 2 * 4, "4": 3 * 3 * 1 * 4 * 6 // 2, "9": 6 * 5},
    "conv1d": {"0": 16 * 3 * 2 * 4, "4": 4 * 3 * 4 * 4, "8": 8 * 3},
    "concat": {"conv1": 8 * 8 * 9 * 1 * 8, "conv2": 4 * 4 * 9 * 8 * 8, "fc": 64 * 10},
    "add": {"conv1": 8 * 8 * 9 * 1 * 8, "conv2": 4 * 4 * 9 * 8 * 8, "fc": 32 * 10},
}


def inputs(shape, n=SAMPLES, seed=0, signed=True) -> np.ndarray:
    low = -1.0 if signed else 0.0
    return np.random.default_rng(seed).uniform(low, 1.0, (n, *shape[1:])).astype(np.float32)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """name -> (float model, Brevitas model, config, exported QONNX path, lowered model), built once."""
    directory = tmp_path_factory.mktemp("hawq_cnn")
    cache = {}

    def get(name):
        if name not in cache:
            factory, shape, weights, activations, options = MODELS[name]
            model = factory()
            config = BitConfig(dict(weights), dict(activations))
            signed = options.get("input_signed", True)
            qmodel = apply_bits(model, config, calibration=inputs(shape, 256, seed=1, signed=signed), **options).eval()
            path = directory / f"{name}.onnx"
            qonnx_ir.export(qmodel, shape, path, progress=lambda _: None)
            cache[name] = (model, qmodel, config, path, lower(qonnx_ir.load(path))[0])
        return cache[name]

    return get


def float64_forward(model: nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        y = copy.deepcopy(model).double().eval()(torch.from_numpy(x.astype(np.float64)))
    return getattr(y, "value", y).numpy()


@pytest.mark.parametrize("name", MODELS)
def test_lowered_cnn_equals_brevitas_in_float64(name, built):
    _, qmodel, _, _, lowered = built(name)
    signed = MODELS[name][4].get("input_signed", True)
    x = inputs(MODELS[name][1], seed=2, signed=signed).astype(np.float64)  # NCHW (NCL), as PyTorch takes them
    hardware = np.asarray(qonnx_ir.execute(lowered, x))
    reference = float64_forward(qmodel, x)
    assert hardware.shape == reference.shape and hardware.shape[0] == SAMPLES
    mismatches = int(np.sum(hardware != reference))
    assert mismatches == 0, f"{mismatches} of {hardware.size} outputs differ (max {np.abs(hardware - reference).max()})"
    assert len(np.unique(reference, axis=0)) > SAMPLES // 2  # not a degenerate network


def _po2(value: float) -> bool:
    return value > 0 and value == 2.0 ** round(math.log2(value))


@pytest.mark.parametrize("name", MODELS)
def test_layers_bits_and_power_of_two_scales(name, built):
    model, qmodel, config, _, _ = built(name)
    layers = quantizable_layers(qmodel)
    assert list(layers) == list(quantizable_layers(model)) == list(config.weights)  # the float model's names
    kinds = {nn.Linear: QuantLinear, nn.Conv1d: QuantConv1d, nn.Conv2d: QuantConv2d}
    floats = dict(model.named_modules())
    for layer_name, layer in layers.items():
        original = floats[layer_name]
        assert type(layer) is kinds[type(original)]
        with torch.no_grad():
            weight = layer.quant_weight()
        assert int(weight.bit_width) == config.weights[layer_name]
        assert _po2(float(weight.scale))
        assert torch.equal(weight.value, quantize_weight(original.weight.detach(), config.weights[layer_name]))
        if not isinstance(layer, QuantLinear):
            assert (layer.kernel_size, layer.stride, layer.padding, layer.groups) == (
                original.kernel_size, original.stride, original.padding, original.groups)
    quantizers = []
    for module in qmodel.modules():
        if isinstance(module, (QuantReLU, QuantIdentity)):
            quantizers.append(module.act_quant)
        elif isinstance(module, (QuantLinear, QuantConv1d, QuantConv2d)) and module.input_quant.is_quant_enabled:
            quantizers.append(module.input_quant)
    assert quantizers
    for quantizer in quantizers:
        assert _po2(float(quantizer.scale().detach()))
    untouched = (nn.BatchNorm1d, nn.BatchNorm2d, nn.MaxPool1d, nn.MaxPool2d, nn.Flatten, nn.Dropout)
    for module_name, module in model.named_modules():
        if isinstance(module, untouched):
            assert type(qmodel.get_submodule(module_name)) is type(module)
        elif isinstance(module, (nn.AvgPool1d, nn.AvgPool2d, nn.AdaptiveAvgPool2d)):  # requantized at once
            assert type(qmodel.get_submodule(f"{module_name}.pool")) is type(module)
            assert isinstance(qmodel.get_submodule(f"{module_name}.requant"), (QuantReLU, QuantIdentity))


def test_which_layer_requantizes(built):
    """A layer reads the ReLU's quantizer through max pools and reshapes; an average pool is
    requantized right after it; after a BatchNorm the layer has its own input quantizer."""
    _, q, config, _, _ = built("sequential")
    assert isinstance(q.input_quant, QuantIdentity)
    assert int(q.input_quant.act_quant.bit_width()) == config.activations["0"]
    assert not q[1].input_quant.is_quant_enabled and not q[5].input_quant.is_quant_enabled  # after input, max pool
    assert int(q[3].act_quant.bit_width()) == config.activations["4"]  # ReLU bits = its reader's
    assert isinstance(q[7].requant, QuantReLU)  # the 2 x 2 average of a ReLU's output: unsigned
    assert int(q[7].requant.act_quant.bit_width()) == config.activations["8"]
    assert not q[9].input_quant.is_quant_enabled
    _, q, config, _, _ = built("pooled")
    assert q[5].input_quant.is_quant_enabled and q[5].input_quant.is_signed  # after the BatchNorm
    assert int(q[5].input_quant.bit_width()) == config.activations["4"]
    assert isinstance(q[7].requant, QuantReLU)  # global average over 3 x 3: 1/9 is no power of two
    assert not q[10].input_quant.is_quant_enabled  # through Flatten and Dropout


def test_joins_share_one_quantizer(built):
    _, q, config, _, _ = built("concat")
    assert q.relu1.act_quant is q.relu2.act_quant  # one scale: Brevitas concatenates them as one type
    assert not q.fc.input_quant.is_quant_enabled  # reads the concatenation as it is
    assert int(q.relu1.act_quant.bit_width()) == config.activations["conv2"] == config.activations["fc"]
    assert q.conv1.input_quant.is_quant_enabled and not q.conv1.input_quant.is_signed  # the model input
    _, q, config, _, _ = built("add")
    assert q.relu1.act_quant is q.relu2.act_quant
    assert q.fc.input_quant.is_quant_enabled and not q.fc.input_quant.is_signed  # the sum, requantized
    assert int(q.fc.input_quant.bit_width()) == config.activations["fc"] != config.activations["conv2"]


@pytest.mark.parametrize("name", MODELS)
def test_layer_shapes_and_costs_equal_qonnx_inference_cost(name, built):
    model, _, config, path, _ = built(name)
    shape = MODELS[name][1]
    shapes = layer_shapes(model, shape)
    assert shapes == layer_shapes(model, sample=inputs(shape, 3))
    assert {s.name: s.macs for s in shapes} == EXPECTED_MACS[name]
    rows = layer_costs(qonnx_ir.load(path))  # the exported QONNX file, counted as qonnx-inference-cost does
    assert len(rows) == len(shapes)
    ours = config.layer_costs(shapes)
    for row, layer in zip(rows, shapes):  # both in forward order
        assert row.macs == layer.macs, layer.name
        assert row.n_weights == layer.n_weights == dict(model.named_modules())[layer.name].weight.numel()
        assert row.bops == ours["bops"][layer.name], layer.name
        assert row.weight_memory_bits == ours["weight_bits"][layer.name], layer.name
        assert (row.act_bits, row.weight_bits_each) == (config.activations[layer.name], config.weights[layer.name])


def test_layer_shapes_need_an_input_size_for_convolutions():
    with pytest.raises(QonnxError, match="'0' is a Conv2d: give input_shape"):
        layer_shapes(sequential_cnn())
    with pytest.raises(QonnxError, match="fails on an input of shape"):
        layer_shapes(sequential_cnn(), (1, 3, 8, 8))
    mlp = nn.Sequential(nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 3))
    assert layer_shapes(mlp) == [LayerShape("0", 16, 8), LayerShape("2", 8, 3)] == layer_shapes(mlp, (1, 16))
    assert layer_shapes(nn.Linear(4, 6), (1, 5, 4)) == [LayerShape("", 4, 6, out_positions=5)]  # (N, L, F)
    with pytest.raises(QonnxError, match="groups 3 does not divide"):
        LayerShape("c", 4, 6, (3, 3), groups=3)


def test_traces_file_carries_conv_shapes_and_allocation_uses_them(tmp_path, capsys):
    model = sequential_cnn()
    shapes = layer_shapes(model, (1, 1, 8, 8))
    traces = {"0": 2.0, "4": 1.0, "8": 0.5}
    sens = sensitivities(model, traces, candidates=(2, 4, 8))
    path = write_traces_json(tmp_path / "traces.json", model, traces, sens, {"model": "cnn"}, input_shape=(1, 1, 8, 8))
    data = json.loads(path.read_text())["layers"]
    assert data[0]["kind"] == "conv2d" and data[0]["kernel"] == [3, 3] and data[0]["out_positions"] == 64
    assert data[0]["macs"] == shapes[0].macs and data[1]["groups"] == 1
    assert set(data[2]) == {"name", "in_features", "out_features", "trace", "std_error", "sensitivity"}  # a Linear
    layers, read_sens, _, _ = read_traces(path)
    assert layers == shapes and read_sens == sens

    code = main(["hawq", "allocate", str(path), "--alpha", "0.5", "-o", str(tmp_path / "bits.yaml")])
    out, err = capsys.readouterr()
    assert code == 0, err
    bits = BitConfig.load(tmp_path / "bits.yaml")
    assert bits.costs(shapes)["bops"] <= bits.meta["budget"]["bops"]
    assert f"{shapes[1].macs:,}" in out and "3x3" in out

    data[0]["kernel"] = [3, 0]
    path.write_text(json.dumps({"layers": data, "meta": {}}))
    code = main(["hawq", "allocate", str(path), "--alpha", "0.5", "-o", str(tmp_path / "b.yaml")])
    _, err = capsys.readouterr()
    assert code == 2 and err.count("\n") == 1 and "'kernel' must be a list of at most 2 positive integers" in err


def test_allocation_on_cnn_shapes_is_exact_in_qonnx_numbers(tmp_path):
    """The ILP's BOPs for a CNN are what qonnx counts for the model apply_bits builds from its bits."""
    model = sequential_cnn()
    shape = (1, 1, 8, 8)
    sens = sensitivities(model, {"0": 3.0, "4": 1.0, "8": 0.2})
    shapes = layer_shapes(model, shape)
    bits = allocate_bits(sens, shapes, alpha=0.3, candidates=(2, 3, 4, 5, 6, 7, 8))
    qmodel = apply_bits(model, bits, calibration=inputs(shape, 128)).eval()
    qonnx_ir.export(qmodel, shape, tmp_path / "m.onnx", progress=lambda _: None)
    rows = layer_costs(qonnx_ir.load(tmp_path / "m.onnx"))
    assert sum(r.bops for r in rows) == bits.meta["costs"]["bops"] <= bits.meta["budget"]["bops"]


def test_qat_keeps_a_joined_cnn_exact(tmp_path):
    """Training moves weights and the shared learned scale; the result still lowers exactly."""
    model = joined_cnn("cat")
    config = BitConfig({"conv1": 5, "conv2": 4, "fc": 5}, {"conv1": 8, "conv2": 5, "fc": 5})
    x = inputs((1, 1, 8, 8), 400, seed=5, signed=False)
    y = (x.reshape(400, -1)[:, :10].argmax(1)).astype(np.int64)  # a learnable toy target
    qmodel = apply_bits(model, config, calibration=x[:200], input_signed=False, input_range=1.0)
    before = copy.deepcopy(qmodel.state_dict())
    history = train_qat(qmodel, (x[:300], y[:300]), (x[300:], y[300:]), epochs=2, lr=1e-2, batch_size=50,
                        progress=False)
    assert history["epochs_run"] == 2
    assert not torch.equal(before["conv2.weight"], qmodel.state_dict()["conv2.weight"])
    assert qmodel.relu1.act_quant is qmodel.relu2.act_quant
    qonnx_ir.export(qmodel, (1, 1, 8, 8), tmp_path / "m.onnx", progress=lambda _: None)
    lowered, _ = lower(qonnx_ir.load(tmp_path / "m.onnx"))
    test = inputs((1, 1, 8, 8), 500, seed=6, signed=False).astype(np.float64)
    assert np.array_equal(np.asarray(qonnx_ir.execute(lowered, test)), float64_forward(qmodel, test))


class TwiceCalled(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 2, 3, padding=1)
        self.fc = nn.Linear(2 * 64, 3)

    def forward(self, x):
        return self.fc(self.conv(self.conv(x)).flatten(1))


class InPlaceAdd(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1, self.conv2, self.relu = nn.Conv2d(1, 2, 3, padding=1), nn.Conv2d(2, 2, 1), nn.ReLU()
        self.fc = nn.Linear(2 * 64, 3)

    def forward(self, x):
        h = self.relu(self.conv1(x))
        h += self.relu(self.conv2(h))
        return self.fc(h.flatten(1))


def test_bad_cnn_input_is_a_clear_error():
    x = inputs((1, 1, 8, 8), 16)
    three = {"0": 4, "4": 4, "8": 4}
    reflect = sequential_cnn()
    reflect[0].padding_mode = "reflect"
    with pytest.raises(QonnxError, match="'0' pads with mode 'reflect'"):
        apply_bits(reflect, BitConfig(dict(three), dict(three)))
    even = nn.Sequential(nn.Conv2d(1, 2, 2, padding="same"), nn.Flatten(), nn.Linear(128, 3))
    with pytest.raises(QonnxError, match="padding='same' with an even kernel"):
        apply_bits(even, BitConfig({"0": 4, "2": 4}, {"0": 4, "2": 4}))
    with pytest.raises(QonnxError, match="'conv' is called more than once"):
        apply_bits(TwiceCalled(), BitConfig({"conv": 4, "fc": 4}, {"conv": 4, "fc": 4}),
                   calibration=inputs((1, 2, 8, 8), 8))
    with pytest.raises(QonnxError, match="adds in place"):
        apply_bits(InPlaceAdd(), BitConfig({"conv1": 4, "conv2": 4, "fc": 4}, {"conv1": 4, "conv2": 4, "fc": 4}),
                   calibration=x)
    with pytest.raises(QonnxError, match=r"layers conv2, fc read the quantized output of 'relu1', 'relu2' .* "
                                         r"tie=\[\['conv2', 'fc'\]\]"):
        apply_bits(joined_cnn("cat"), BitConfig({"conv1": 4, "conv2": 4, "fc": 4}, {"conv1": 8, "conv2": 4, "fc": 6}),
                   calibration=x)
    with pytest.raises(QonnxError, match="fails on the calibration data"):
        apply_bits(sequential_cnn(), BitConfig(dict(three), dict(three)), calibration=inputs((1, 3, 8, 8), 4))
    with pytest.raises(QonnxError, match="'0' is a Conv3d; supported layers are"):
        apply_bits(nn.Sequential(nn.Conv3d(1, 1, 1), nn.MaxPool3d(1)), BitConfig({"0": 4}, {"0": 4}))


def test_sensitivity_command_on_a_cnn(tmp_path, capsys):
    """`qonnx hawq sensitivity` on image data: the conv shapes come from the data's shape."""
    factory = tmp_path / "cnn.py"
    factory.write_text("import torch\nfrom torch import nn\n\ndef make():\n    torch.manual_seed(0)\n"
                       "    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),\n"
                       "                         nn.Flatten(), nn.Linear(64, 3))\n")
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "data.npz", x=rng.uniform(0, 1, (128, 1, 8, 8)).astype(np.float32), y=rng.integers(0, 3, 128))
    code = main(["hawq", "sensitivity", f"{factory}:make", "--data", str(tmp_path / "data.npz"), "-o",
                 str(tmp_path / "traces.json"), "--max-probes", "32"])
    _, err = capsys.readouterr()
    assert code == 0, err
    layers, _, _, _ = read_traces(tmp_path / "traces.json")
    assert layers == [LayerShape("0", 1, 4, (3, 3), 1, 64), LayerShape("4", 64, 3)]
    assert layers[0].macs == 8 * 8 * 9 * 1 * 4
