"""fxbn.export_litert: layers as .tflite integer graphs run in ai-edge-litert, bit-exact with FixedPointBN.apply on
every int8/int16 input of every channel (int32: a sample plus the range ends), synthetic and ResNet-20 layers."""
import numpy as np
import pytest

import fxbn
from fxbn import codegen, export_litert as el
from test_codegen import inputs, resnet20_layers, synthetic_layers
from conftest import DATA_DIR

pytest.importorskip("ai_edge_litert.interpreter", reason="ai-edge-litert not installed")
pytest.importorskip("tflite", reason="tflite (schema package) not installed")


def _check(layer, sample=20_000, model_from=None):
    x = np.ascontiguousarray(inputs(layer, sample)[0].T)                      # [K, C]
    y = el.run_litert(el.layer_to_tflite(model_from or layer, x.shape[0]), x)
    return x, y, layer.apply(x, axis=-1)


@pytest.mark.parametrize("name", sorted(synthetic_layers()))
def test_litert_bit_exact(name):
    layer = synthetic_layers()[name]
    x, y, expected = _check(layer)
    assert y.dtype == layer.out_dtype and np.array_equal(y, expected)
    if layer.in_dtype.itemsize <= 2:
        assert x.shape[0] == np.iinfo(layer.in_dtype).max - np.iinfo(layer.in_dtype).min + 1


def test_litert_resnet20_bit_exact():
    real = resnet20_layers()
    if not real:
        pytest.skip(f"shared data not found: {DATA_DIR / 'cifar10' / 'resnet20.npz'}")
    for name, layer in real.items():
        x, y, expected = _check(layer, 2_000)
        assert np.array_equal(y, expected), name


@pytest.mark.parametrize("name,change", [("i8_half_even", ("bias", 1, 97)), ("i32_acc64", ("shift", 0, 1)),
                                         ("i16_half_away", ("multiplier", 2, 1))])
def test_a_wrong_model_is_detected(name, change):
    """Both graph forms (int32 and the int64 detour) are checked: a mutated parameter gives a mismatch."""
    layer = synthetic_layers()[name]
    arrays = {k: getattr(layer, k).copy() for k in ("multiplier", "bias", "shift")}
    arrays[change[0]][change[1]] += change[2]
    wrong = fxbn.FixedPointBN(arrays["multiplier"], arrays["bias"], arrays["shift"], layer.in_range, layer.out_range,
                              layer.rounding, layer.source, layer.out_dtype, layer.in_dtype)
    _, y, expected = _check(layer, 2_000, model_from=wrong)
    assert not np.array_equal(y, expected)


def test_both_accumulator_forms_exercised():
    widths = {codegen.c_accumulator_bits(layer) for layer in synthetic_layers().values()}
    assert widths == {32, 64}


def test_litert_shared_networks_bit_exact():
    """Real layers of ResNet-20, Darknet, MobileNet (incl. depthwise) and ResNet-50 (int64 detour: 38..46-bit
    accumulators): bit-exact on a sample, the range ends and every breakpoint neighbourhood (T-1, T, T+1)."""
    from shared_net_layers import real_layers, target_inputs

    real = real_layers()
    if not real:
        pytest.skip(f"shared data not found under {DATA_DIR}")
    assert len({n.split("_")[0] for n in real}) >= 3
    for name, layer in real.items():
        x = target_inputs(layer)
        y = el.run_litert(el.layer_to_tflite(layer, x.shape[0]), x)
        assert np.array_equal(y, layer.apply(x, axis=-1)), name


def test_litert_shared_network_wrong_model_detected():
    """A model from a real layer with one bias moved by one unit mismatches at a breakpoint neighbourhood."""
    from shared_net_layers import real_layers, target_inputs

    real = real_layers()
    if not real:
        pytest.skip(f"shared data not found under {DATA_DIR}")
    layer = real["resnet50_bn_conv1"] if "resnet50_bn_conv1" in real else next(iter(real.values()))
    bias = layer.bias.copy()
    bias[3] += 1
    wrong = fxbn.FixedPointBN(layer.multiplier, bias, layer.shift, layer.in_range, layer.out_range, layer.rounding,
                              layer.source, layer.out_dtype, layer.in_dtype)
    x = target_inputs(layer)
    y = el.run_litert(el.layer_to_tflite(wrong, x.shape[0]), x)
    assert not np.array_equal(y, layer.apply(x, axis=-1))
