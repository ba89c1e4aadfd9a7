"""Hostile inputs to the public entry points other than FixedPointBN.apply's array checks (those are in
tests/test_hostile.py): the rescale and add constructors, FixedPointAdd's constructor, apply and records,
fxbn.ops.mul_input, and the op record of a saved FixedPointRescale.  Each case here returned or stored a wrong
value without an error before the check it exercises; the comments name what used to happen.
"""
import json

import numpy as np
import pytest

import fxbn
from fxbn import ops

THIRD = np.longdouble(1) / 3          # not a float64: float() rounded it silently


def _add():
    return fxbn.from_add((0.0123, 0.05), (3, -5), 0.07, 1)


# ---------------------------------------------------------------------------------------------- constructors
@pytest.mark.parametrize("call,match", [
    # before: each was converted with float()/int() and solved for another number than the one given
    (lambda: fxbn.from_add((THIRD, 0.05), (3, -5), 0.07, 1), r"in_scales\[0\] .*not exactly representable"),
    (lambda: fxbn.from_add((0.0123, 0.05), (3, -5), THIRD, 1), r"out_scale .*not exactly representable"),
    (lambda: fxbn.from_add(("0.0123", 0.05), (3, -5), 0.07, 1), r"in_scales\[0\]"),
    (lambda: fxbn.from_add((True, 0.05), (3, -5), 0.07, 1), r"in_scales\[0\]"),
    (lambda: fxbn.from_add((0.0123, 0.05), (True, -5), 0.07, 1), r"in_zero_points\[0\] is True"),
    (lambda: fxbn.from_add((0.0123, 0.05), (3, -5), 0.07, True), r"out_zero_point is True"),
    (lambda: fxbn.from_add((0.0123, 0.05), (3, -5), 0.07, 1, out_range=(-10.5, 100.9)), r"out_range"),  # (-10, 100)
    (lambda: fxbn.from_add((0.0123, 0.05), (3, -5), 0.07, 1, in_ranges=((True, 5), (0, 9))), r"in_ranges\[0\]"),
    (lambda: fxbn.from_mul((THIRD, 0.03), (4, -2), 0.01, 1), r"in_scales\[0\] .*not exactly representable"),
    (lambda: fxbn.from_mul((0.02, "0.03"), (4, -2), 0.01, 1), r"in_scales\[1\]"),
    (lambda: fxbn.from_mul((0.02, 0.03), (4, False), 0.01, 1), r"in_zero_points\[1\] is False"),
    (lambda: fxbn.from_avgpool(True, 0.031, -3, 0.02, 5), "window"),           # before: a window of 1
    (lambda: fxbn.from_avgpool((2, True), 0.031, -3, 0.02, 5), "window"),      # before: a window of 2
    (lambda: fxbn.from_avgpool(4, [0.031, 0.02], -3, 0.02, 5), "in_scale must be one number"),   # was TypeError
    (lambda: fxbn.from_avgpool(4, 0.031, [-3, 1], 0.02, 5), "in_zero_point must be one integer"),
])
def test_rescale_and_add_constructors_refuse_what_they_would_change(call, match):
    with pytest.raises(ValueError, match=match):
        call()


@pytest.mark.parametrize("change,match", [
    # before: int() truncated each of these, or a raw OverflowError came from the kernel binding at apply
    (dict(multipliers=(1.7, 2)), r"multipliers\[0\] is 1.7"),
    (dict(bias=1.5), "bias is 1.5"),
    (dict(shift=3.9), "shift is 3.9"),
    (dict(shift=True), "shift is True"),
    (dict(in_ranges=((-128.5, 127), (-128, 127))), r"in_ranges\[0\]"),
    (dict(out_range=(-128.7, 127)), "out_range"),
    (dict(multipliers=(2 ** 70, 2), in_ranges=((0, 0), (-128, 127))), r"multipliers\[0\] = 1180591620717411303424"),
    (dict(bias=2 ** 64, in_ranges=((0, 0), (0, 0))), "bias = 18446744073709551616"),
])
def test_add_constructor_takes_integers_only(change, match):
    add = _add()
    kw = dict(multipliers=add.multipliers, bias=add.bias, shift=add.shift, in_ranges=add.in_ranges,
              out_range=add.out_range, rounding=add.rounding, source=add.source)
    kw.update(change)
    with pytest.raises(ValueError, match=match):
        ops.FixedPointAdd(**kw)


@pytest.mark.parametrize("threads", [-1, 1.5, 2 ** 40, 1025, True])
def test_add_apply_threads_are_checked(threads):
    """Before: -1 and 1.5 ran (1.5 as 1), 2^40 raised a raw OverflowError."""
    x = np.arange(-128, 128, dtype=np.int8)
    out = np.full(x.shape, 9, np.int8)
    with pytest.raises(ValueError, match="threads must be None"):
        _add().apply(x, x[::-1].copy(), out=out, threads=threads)
    assert (out == 9).all()


# an int16 x int16 add whose in_ranges no int8 / uint8 value reaches (input 1 below -128, input 2 above 255)
_NARROW16 = dict(in_dtypes=("int16", "int16"), out_dtype="int8", rounding="half_up",
                 in_ranges=((-12662, -12600), (466, 516)))


@pytest.mark.parametrize("which,dt", [(1, "int8"), (1, "uint8"), (2, "int8"), (2, "uint8")])
@pytest.mark.parametrize("form", ["same", "broadcast", "strided", "reference"])
def test_add_inputs_of_a_type_that_cannot_reach_in_ranges_raise(which, dt, form):
    """Before: int8 data for an int16 input whose in_range lies outside int8 clipped the box to an empty one
    (lo > hi), the check passed every value and apply returned [-128, -128, -128] (reference() [127, ...]) without
    an error.  Every element is out of range: element 0 is named, out= stays untouched."""
    layer = fxbn.from_add((0.02286193563194861, 0.026603181504756115), (0, 0), 0.05912196601280413, **_NARROW16)
    x1 = np.array([-12662, -12630, -12600, -12601], np.int16)
    x2 = np.array([466, 500, 516, 470], np.int16)
    assert layer.apply(x1, x2).shape == (4,)  # the declared types: in range
    # values the empty box let through before (every one of them, so the old code raised nothing)
    narrow = np.array({(1, "int8"): [-100, -90, -80, -70], (2, "int8"): [100, 0, 50, -40],
                       (1, "uint8"): [5, 100, 150, 200], (2, "uint8"): [210, 230, 250, 255]}[which, dt], dt)
    x1, x2 = (narrow, x2) if which == 1 else (x1, narrow)
    if form == "broadcast":
        x1, x2 = np.stack([x1, x1]), x2
    elif form == "strided":
        x1, x2 = np.repeat(x1, 2)[::2], np.repeat(x2, 2)[::2]
    out = np.full(x1.shape, 9, np.int8)
    with pytest.raises(ValueError, match=rf"x{which} at \[0(, 0)?\] is .*outside in_ranges\[{which - 1}\]"):
        if form == "reference":
            layer.reference(x1, x2)
        else:
            layer.apply(x1, x2, out=out)
    assert (out == 9).all()


# ---------------------------------------------------------------------------------------------- mul_input
def test_mul_input_refuses_products_that_wrap_and_non_integers():
    """mul_input cast (x1 - z1)*(x2 - z2) to int32 without a check: 65536*65536 became 0 and the mul layer, whose
    range holds 0, returned the output of 0 without an error; 1.7 was truncated to 1."""
    mul = fxbn.from_mul((0.02, 0.03), (0, 0), 0.01, 1)
    x = np.array([65536], np.int32)
    with pytest.raises(ValueError, match=r"x1 has dtype int32"):
        ops.mul_input(x, x, (0, 0))
    with pytest.raises(ValueError, match=r"x1 has dtype float64"):
        ops.mul_input(np.array([1.7]), np.array([3], np.int8), (0, 0))
    with pytest.raises(ValueError, match=r"in_zero_points\[1\] is 0.5"):
        ops.mul_input(np.array([1], np.int8), np.array([3], np.int8), (0, 0.5))
    with pytest.raises(ValueError, match=r"x2 of shape \(4,\) does not broadcast"):
        ops.mul_input(np.zeros(3, np.int8), np.zeros(4, np.int8), (0, 0))
    # the in-range cases still work, int16 inputs included, and equal the exact product
    x1 = np.arange(-128, 128, dtype=np.int8)
    x2 = np.arange(127, -129, -1, dtype=np.int16)
    p = ops.mul_input(x1, x2, (4, -2))
    assert p.dtype == np.int32 and np.array_equal(p, (x1.astype(np.int64) - 4) * (x2.astype(np.int64) + 2))
    assert np.array_equal(mul.apply(ops.mul_input(x1, x1, (0, 0))), mul.reference(ops.mul_input(x1, x1, (0, 0))))


# ---------------------------------------------------------------------------------------------- saved records
def _add_record(tmp_path):
    _add().save(tmp_path / "add.json")
    return json.loads((tmp_path / "add.json").read_text())


@pytest.mark.parametrize("name,mutate,match", [
    # before: each loaded without a word
    ("extra field", lambda r: r.__setitem__("extra", 1), "unknown field"),
    ("version true", lambda r: r.__setitem__("version", True), "version"),
    ("solve_options unknown key", lambda r: r.__setitem__("solve_options", {"magic": 1}), "solve_options"),
    ("solve_options acc_bits 1", lambda r: r.__setitem__("solve_options", {"acc_bits": 1, "max_shift": 40}),
     "solve_options"),
    ("solve_options list", lambda r: r.__setitem__("solve_options", [["acc_bits", 64]]), "solve_options"),
    ("source extra", lambda r: r["source"].__setitem__("gamma", 1.0), "source"),
])
def test_add_record_fields_are_validated(tmp_path, name, mutate, match):
    record = _add_record(tmp_path)
    mutate(record)
    for ext in (".json", ".npz"):
        path = tmp_path / f"m{ext}"
        if ext == ".json":
            path.write_text(json.dumps(record))
        else:
            np.savez(path, meta=np.array(json.dumps(record)))
        with pytest.raises(ValueError, match=match) as info:
            fxbn.load(path, check=False)
        assert str(path) in str(info.value), name


def _rescales():
    return {"requant": fxbn.from_requant([0.0021, 0.004], 0.017, -4, bias=[37, -5], in_range=(-3000, 3000)),
            "avgpool": fxbn.from_avgpool((2, 2), 0.031, -3, 0.02, 5),
            "mul": fxbn.from_mul((0.02, 0.03), (4, -2), 0.01, 1)}


@pytest.mark.parametrize("kind,mutate", [
    # before: the op record (what the layer says it computes; the ONNX network export picks avgpool layers by
    # op["window"]) loaded whatever it held as long as its kind was one of the three
    ("requant", lambda op: op.__setitem__("acc_scale", [0.5, 0.004])),
    ("requant", lambda op: op.__setitem__("bias", [99, -5])),
    ("requant", lambda op: op.__setitem__("out_zero_point", [-3, -4])),
    ("requant", lambda op: op.__setitem__("window", 3)),
    ("requant", lambda op: op.__setitem__("kind", "avgpool")),
    ("avgpool", lambda op: op.__setitem__("window", 9)),
    ("avgpool", lambda op: op.__setitem__("in_zero_point", -2)),
    ("avgpool", lambda op: op.__setitem__("in_dtype", "int32")),
    ("avgpool", lambda op: op.__setitem__("in_scale", 0.5)),
    ("mul", lambda op: op.__setitem__("in_scales", [0.03, 0.02])),
    ("mul", lambda op: op.__setitem__("in_zero_points", [5, -2])),
    ("mul", lambda op: op.__setitem__("in_dtypes", ["int16", "int8"])),
    ("mul", lambda op: op.__setitem__("out_scale", 0.02)),
    ("mul", lambda op: op.pop("out_zero_point")),
])
def test_rescale_op_record_must_match_the_layer(tmp_path, kind, mutate):
    layer = _rescales()[kind]
    record = layer.to_dict()
    fxbn.load(_write(tmp_path / "good.json", record))          # the untouched record loads
    record = json.loads(json.dumps(record))
    mutate(record["op"])
    path = _write(tmp_path / "bad.json", record)
    with pytest.raises(ValueError, match=r"op\b") as info:
        fxbn.load(path, check=False)
    assert str(path) in str(info.value)


def _write(path, record):
    path.write_text(json.dumps(record))
    return path


# ---------------------------------------------------------------------------------------------- importers
@pytest.mark.parametrize("kwargs,match", [
    # before: accepted (zero point 0.5 / True / 2^40, scale True, qmin 1.7 as 1) or a KeyError / TypeError
    (dict(scale=0.1, zero_point=0.5), "zero_point is 0.5"),
    (dict(scale=0.1, zero_point=True), "zero_point is True"),
    (dict(scale=0.1, zero_point=2 ** 40), "zero_point = 1099511627776"),
    (dict(scale=0.1, zero_point=0, qmin=1.7), "qmin is 1.7"),
    (dict(scale=True, zero_point=0), "scale"),
    (dict(scale="0.1", zero_point=0), "scale"),
    (dict(scale=THIRD, zero_point=0), "not exactly representable"),
    (dict(scale=0.1, zero_point=0, dtype="float32"), "dtype"),
])
def test_activation_quant_takes_exact_values_only(kwargs, match):
    from fxbn.importers import ActivationQuant

    with pytest.raises(ValueError, match=match):
        ActivationQuant(**kwargs)


def test_weights_and_bounds_refuse_what_they_cannot_represent():
    """quantize_weights turned a NaN weight into 0 (the layer was built as if the conv were fine) and an inf into
    0 with an infinite scale; accumulator_bounds truncated float weights (1.7 -> 1) and wrapped int64 products
    ([2^62, 2^62] gave the bound [-2^63, 0])."""
    from fxbn.importers import ActivationQuant, accumulator_bounds, calibrate_values, quantize_weights

    for bad in (float("nan"), float("inf")):
        with pytest.raises(ValueError, match=r"weight .*\(1, 0\) is " + str(bad)):
            quantize_weights(np.array([[1.0, 2.0], [bad, 1.0]]))
    act = ActivationQuant(0.1, 0)
    with pytest.raises(ValueError, match="integer"):
        accumulator_bounds(np.array([[1.7, 2.0]]), act)
    with pytest.raises(ValueError, match="int64"):
        accumulator_bounds(np.array([[2 ** 62, 2 ** 62]]), act)
    assert accumulator_bounds(np.array([[127, -127]], np.int8), act).tolist() == [[-32385, 32385]]
    with pytest.raises(ValueError, match="bias_q"):
        accumulator_bounds(np.array([[127, -127]], np.int8), act, bias_q=[2.5])
    with pytest.raises(ValueError, match="scale"):          # before: ZeroDivisionError
        calibrate_values(np.array([0.0, 5e-324]))


def test_from_torch_refuses_a_nan_weight():
    """Before: the NaN weight was quantized to 0 and a layer for a conv that does not exist was returned."""
    torch = pytest.importorskip("torch")
    from fxbn.importers import ActivationQuant, from_torch

    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4)).eval()
    with torch.no_grad():
        net[0].weight[2, 1, 0, 0] = float("nan")
    with pytest.raises(ValueError, match=r"weight"):
        from_torch(net, {"1": ActivationQuant(0.05, 0)}, {"1": ActivationQuant(0.1, 0)}, strict=True)


# ---------------------------------------------------------------------------------------------- fxbn.network
@pytest.fixture(scope="module")
def small_graph():
    from fxbn.importers import BatchNormParams
    from fxbn.network import Graph, Node

    rng = np.random.default_rng(0)
    bn = BatchNormParams(np.ones(4), np.zeros(4), np.zeros(4), np.ones(4), 1e-5)
    g = Graph([Node("input", "input"),
               Node("c1", "conv", ("input",), {"w": rng.normal(size=(3, 3, 3, 4)).astype(np.float32), "stride": 1,
                                                "pad": (1, 1, 1, 1)}),
               Node("b1", "bn", ("c1",), {"bn": bn, "act": "relu"}), Node("pool", "gap", ("b1",)),
               Node("fc", "dense", ("pool",), {"w": rng.normal(size=(4, 5)), "bias": np.zeros(5)})],
              input_mean=[0.5] * 3, input_std=[0.25] * 3)
    pixels = rng.integers(0, 256, size=(2, 8, 8, 3), dtype=np.uint8)
    g.calibrate([pixels])
    g.quantize()
    return g, pixels


def test_network_pixels_are_checked_not_cast(small_graph):
    """forward_int/forward_pair cast the pixels with np.asarray(pixels, np.uint8): int16 pixels of 300 ran as
    44, -1 as 255 and 1.7 as 1, and the logits of other images came back without an error."""
    g, pixels = small_graph
    want = g.forward_int(pixels)[0]
    assert np.array_equal(g.forward_int(pixels.astype(np.int32))[0], want)       # exact values of another type
    wrapped = pixels.astype(np.int16)
    wrapped[1, 2, 3, 0] = 300
    negative = pixels.astype(np.int16)
    negative[0, 0, 0, 2] = -1
    for bad, match in ((wrapped, r"pixels\[1, 2, 3, 0\] is 300"), (negative, r"pixels\[0, 0, 0, 2\] is -1"),
                       (pixels + 0.7, "pixels have dtype float64"), (pixels.astype(bool), "pixels have dtype bool")):
        for run in (g.forward_int, g.forward_pair):
            with pytest.raises(ValueError, match=match):
                run(bad)


def test_network_dense_bias_must_be_representable(small_graph):
    """A NaN or huge classifier bias became int64 garbage (-2^63) in the integer logits, with a RuntimeWarning
    at most."""
    g, pixels = small_graph
    fc = g.by_name["fc"]
    saved = fc.attrs["bias"]
    try:
        for bad in (np.nan, 1e300):
            fc.attrs["bias"] = np.array([0.0, bad, 0.0, 0.0, 0.0])
            with pytest.raises(ValueError, match=r"fc.*bias\[1\]"):
                g.forward_int(pixels)
    finally:
        fc.attrs["bias"] = saved


# ---------------------------------------------------------------------------------------------- exporters
def test_tosa_run_refuses_inputs_of_another_type_or_shape(tmp_path):
    """run_reference_model saved x as given and tosa_reference_model converted it to the graph's type: int16 300
    ran as the int8 44 and its output came back without an error."""
    et = pytest.importorskip("fxbn.export_tosa")
    if et.reference_model_path() is None:
        pytest.skip("tosa_reference_model not found (pip install tosa-tools)")
    layer = fxbn.from_affine([0.5, 0.25, -0.75], [1.0, -3.0, 7.5], in_dtype="int8", rounding="half_up")
    et.layer_to_tosa(layer, str(tmp_path), 4)
    x = np.array([[100, -100, 127], [1, 2, 3], [-128, 0, 0], [5, 5, 5]], np.int8)
    assert np.array_equal(et.run_reference_model(str(tmp_path), x), layer.apply(x))
    wide = x.astype(np.int16)
    wide[0, 0] = 300
    for bad, match in ((wide, "int16"), (x.astype(np.int32), "int32"), (x[:2], r"\(2, 3\)"),
                       (x.astype(np.float64), "float64"), (x.tolist(), "list")):
        with pytest.raises(ValueError, match=match):
            et.run_reference_model(str(tmp_path), bad)


@pytest.mark.parametrize("rows", [0, -1, 1.5, True])
def test_exporters_refuse_bad_row_counts(tmp_path, rows):
    """Before: TOSA built graphs of shape [0, C], [-1, C] and [1.5, C]; LiteRT models of 0 and -1 rows."""
    layer = fxbn.from_affine([0.5, 0.25], [1.0, -3.0], in_dtype="int8", rounding="half_up")
    et = pytest.importorskip("fxbn.export_tosa")
    pytest.importorskip("tosa")
    with pytest.raises(ValueError, match="rows"):
        et.layer_to_tosa(layer, str(tmp_path), rows)
    assert not any(tmp_path.iterdir())
    el = pytest.importorskip("fxbn.export_litert")
    pytest.importorskip("tflite")
    with pytest.raises(ValueError, match="rows"):
        el.layer_to_tflite(layer, rows)


def test_exporters_name_what_they_take(tmp_path):
    """A FixedPointAdd given to a FixedPointBN exporter: an AttributeError from deep inside before."""
    from fxbn import codegen

    add = _add()
    calls = [lambda: codegen.layer_to_c(add, str(tmp_path), "a")]
    try:
        import fxbn.onnx as fo
        calls.append(lambda: fo.export_layer(add))
    except ImportError:
        pass
    try:
        from fxbn import export_tosa as et
        import tosa  # noqa: F401
        calls.append(lambda: et.layer_to_tosa(add, str(tmp_path), 4))
    except ImportError:
        pass
    try:
        from fxbn import export_litert as el
        import tflite  # noqa: F401
        calls.append(lambda: el.layer_to_tflite(add, 4))
    except ImportError:
        pass
    assert calls
    for call in calls:
        with pytest.raises(ValueError, match="FixedPointBN"):
            call()
    assert not any(tmp_path.iterdir())


# ---------------------------------------------------------------------------------------------- python -m verify
def test_verify_json_leaves_no_partial_file(tmp_path, monkeypatch, capsys):
    """A certificate that fails while being written (here: the encoder raising half-way) left OUT.tmp behind, half
    written, next to OUT."""
    from verify import __main__ as cli

    layer = fxbn.from_affine([0.3, 2.0], [1.0, 2.5], in_dtype="uint8", out_dtype="uint8", rounding="half_up")
    layer.save(tmp_path / "good.json")
    real = cli.write_json

    def failing(obj, fh, expand=4):
        fh.write("{\n \"layers\": [")
        raise RuntimeError("encoder failed")

    monkeypatch.setattr(cli, "write_json", failing)
    cert = tmp_path / "cert.json"
    code = cli.main(["--quiet", "--method", "breakpoints", "--json", str(cert), str(tmp_path / "good.json")])
    assert code == cli.EXIT_INTERNAL
    assert sorted(p.name for p in tmp_path.iterdir()) == ["good.json"]
    monkeypatch.setattr(cli, "write_json", real)
    assert cli.main(["--quiet", "--method", "breakpoints", "--json", str(cert), str(tmp_path / "good.json")]) == 0
    assert json.loads(cert.read_text())["layers"][0]["verdict"] == "PROVED"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cert.json", "good.json"]
    capsys.readouterr()


@pytest.mark.parametrize("module", ["fxbn.ops", "fxbn.api"])
def test_documented_outputs_are_the_outputs(module):
    """The module doctests ran nowhere: fxbn.ops documented the add's outputs as [50, -5, 120] (the exact values
    are [53, -1, 117]) and FixedPointBN.to_c's example raised InfeasibleError (half_even ties)."""
    import doctest
    import importlib

    assert doctest.testmod(importlib.import_module(module)).failed == 0


@pytest.mark.parametrize("shift,match", [(1.7, "shift is 1.7"), ("5", "shift must hold integers"),
                                         (True, "shift is True"), (2 ** 70, "shift = 1180591620717411303424")])
def test_add_feasible_at_takes_an_integer_shift(shift, match):
    """Before: 1.7, "5" and True were answered as shifts 1, 5 and 1 (False each); 2^70 raised OverflowError."""
    with pytest.raises(ValueError, match=match):
        _add().feasible_at(shift)


# ---------------------------------------------------------------------------------------------- fxbn.keras_torch
@pytest.mark.parametrize("layer,change,match", [
    # before: a pooling padding Keras does not have ran as 'valid', and channels_first pooling / flattening ran
    # as channels_last: a module that is not the Keras model, returned without an error
    ("avg", dict(padding="causal"), "padding 'causal'"),
    ("avg", dict(data_format="channels_first"), "data_format 'channels_first'"),
    ("flatten", dict(data_format="channels_first"), "data_format 'channels_first'"),
])
def test_keras_layers_keras_would_read_otherwise_are_refused(layer, change, match):
    pytest.importorskip("torch")
    import copy

    from fxbn.keras_torch import keras_to_torch
    from test_import_keras_cli import resnet8_like

    model_json, arrays = resnet8_like()
    keras_to_torch(model_json, arrays)
    model_json = copy.deepcopy(model_json)
    next(lay for lay in model_json["config"]["layers"] if lay["name"] == layer)["config"].update(change)
    with pytest.raises(ValueError, match=match):
        keras_to_torch(model_json, arrays)


def test_one_channel_rescale_out_errors_name_the_callers_shape():
    """A one-channel rescale applies to any shape; a bad out= was reported against the internal (1, 1, N) view."""
    rq = fxbn.from_requant(0.0021, 0.017, -4, bias=37, in_range=(-3000, 3000))
    x = np.zeros((2, 3), np.int32)
    for out in (np.zeros((2, 6), np.int8)[:, ::2], np.zeros((2, 3), np.int16), np.zeros((3, 2), np.int8)):
        before = out.copy()
        with pytest.raises(ValueError, match=r"of shape \(2, 3\)"):
            rq.apply(x, out=out)
        assert np.array_equal(out, before)
