"""Keras topologies as torch modules (fxbn.keras_torch), the calibration CLI (python -m fxbn.calibrate) and
affine layers in python -m verify activation files."""
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from conftest import DATA_DIR
from fxbn import importers

torch = pytest.importorskip("torch")


def _layer(name, cls, inbound, **config):
    return {"name": name, "class_name": cls, "config": {"name": name, **config},
            "inbound_nodes": [[[i, 0, 0, {}] for i in inbound]] if inbound else []}


def resnet8_like(seed=0):
    """A ResNet-8-style Keras model (MLPerf Tiny): Activation('relu6') (Keras 2.1), a BN-less 1x1 shortcut conv,
    AveragePooling2D, Flatten, and a BN reading a pooled activation (no conv before it)."""
    layers = [
        _layer("input_1", "InputLayer", [], batch_input_shape=[None, 8, 8, 3]),
        _layer("conv2d", "Conv2D", ["input_1"], filters=4, kernel_size=[3, 3], strides=[1, 1], padding="same",
               activation="linear", use_bias=True),
        _layer("bn", "BatchNormalization", ["conv2d"], axis=-1, epsilon=1e-3),
        _layer("act", "Activation", ["bn"], activation="relu6"),
        _layer("conv2d_1", "Conv2D", ["act"], filters=6, kernel_size=[3, 3], strides=[2, 2], padding="same",
               activation="linear", use_bias=False),
        _layer("bn_1", "BatchNormalization", ["conv2d_1"], axis=[3], epsilon=1e-3),
        _layer("re_lu", "ReLU", ["bn_1"]),
        _layer("shortcut", "Conv2D", ["act"], filters=6, kernel_size=[1, 1], strides=[2, 2], padding="valid",
               activation="linear", use_bias=True),
        _layer("add", "Add", ["re_lu", "shortcut"]),
        _layer("act_2", "Activation", ["add"], activation="relu"),
        _layer("avg", "AveragePooling2D", ["act_2"], pool_size=[3, 3], strides=[2, 2], padding="same"),
        _layer("bn_2", "BatchNormalization", ["avg"], axis=-1, epsilon=1e-3),
        _layer("flatten", "Flatten", ["bn_2"]),
        _layer("dense", "Dense", ["flatten"], units=5, activation="softmax", use_bias=True),
    ]
    model_json = {"class_name": "Model", "config": {"name": "m", "layers": layers, "input_layers": [["input_1", 0, 0]],
                                                     "output_layers": [["dense", 0, 0]]}}
    rng = np.random.default_rng(seed)
    f = np.float32
    arrays = {"conv2d/kernel": rng.normal(0, .3, (3, 3, 3, 4)).astype(f), "conv2d/bias": rng.normal(0, .1, 4).astype(f),
              "conv2d_1/kernel": rng.normal(0, .3, (3, 3, 4, 6)).astype(f),
              "shortcut/kernel": rng.normal(0, .3, (1, 1, 4, 6)).astype(f),
              "shortcut/bias": rng.normal(0, .1, 6).astype(f),
              "dense/kernel": rng.normal(0, .3, (2 * 2 * 6, 5)).astype(f), "dense/bias": rng.normal(0, .1, 5).astype(f)}
    for bn, c in (("bn", 4), ("bn_1", 6), ("bn_2", 6)):
        arrays.update({f"{bn}/gamma": rng.uniform(.5, 1.5, c).astype(f), f"{bn}/beta": rng.normal(0, .3, c).astype(f),
                       f"{bn}/moving_mean": rng.normal(0, .3, c).astype(f),
                       f"{bn}/moving_variance": rng.uniform(.5, 2, c).astype(f)})
    return model_json, arrays


def _numpy_forward(a, x):
    """The Keras semantics written out in NumPy (NHWC, TF 'same' padding, TF average pooling over valid elements)."""
    from experiments.qgraph import conv_nhwc, same_padding

    def bn(v, n):
        return (v - a[f"{n}/moving_mean"]) / np.sqrt(a[f"{n}/moving_variance"] + 1e-3) * a[f"{n}/gamma"] \
            + a[f"{n}/beta"]

    h = conv_nhwc(x, a["conv2d/kernel"], 1, same_padding(8, 3, 1) * 2) + a["conv2d/bias"]
    h = np.clip(bn(h, "bn"), 0, 6)
    r = np.maximum(bn(conv_nhwc(h, a["conv2d_1/kernel"], 2, same_padding(8, 3, 2) * 2), "bn_1"), 0)
    s = conv_nhwc(h, a["shortcut/kernel"], 2, (0, 0, 0, 0)) + a["shortcut/bias"]
    v = np.maximum(r + s, 0)                                    # (n, 4, 4, 6)
    (t, b), (l, rr) = same_padding(4, 3, 2), same_padding(4, 3, 2)
    p = np.pad(v, ((0, 0), (t, b), (l, rr), (0, 0)))
    ones = np.pad(np.ones((1, 4, 4, 1)), ((0, 0), (t, b), (l, rr), (0, 0)))
    pooled = np.stack([np.stack([p[:, 2 * i:2 * i + 3, 2 * j:2 * j + 3].sum(axis=(1, 2))
                                 / ones[:, 2 * i:2 * i + 3, 2 * j:2 * j + 3].sum() for j in range(2)], 1)
                       for i in range(2)], 1)
    z = bn(pooled, "bn_2").reshape(len(x), -1) @ a["dense/kernel"] + a["dense/bias"]
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_keras_resnet8_like_converts_exactly_and_imports_every_bn():
    from fxbn.keras_torch import keras_to_torch

    model_json, arrays = resnet8_like()
    module = keras_to_torch(model_json, arrays)
    x = np.random.default_rng(1).normal(size=(3, 8, 8, 3)).astype(np.float32)
    with torch.no_grad():
        ours = module(torch.from_numpy(x)).numpy()
    assert np.allclose(ours, _numpy_forward(arrays, x), atol=1e-5)
    cal = importers.calibrate_torch(module, [torch.from_numpy(x)], strict=True)
    got = {n: (i.kind, i.source, i.activation) for n, i in cal.layers.items()}
    assert got == {"bn": ("conv_bn", "conv2d", "relu6"), "bn_1": ("conv_bn", "conv2d_1", "relu"),
                   "bn_2": ("affine", "truediv", None)}     # the 'same' average pool's division node
    # the importer's topology reading now sees Activation('relu6') too
    assert ("conv2d", "bn", "relu6") in importers.keras_conv_bn_pairs(model_json)


def test_keras_unsupported_layer_is_named():
    from fxbn.keras_torch import keras_to_torch

    model_json, arrays = resnet8_like()
    model_json["config"]["layers"][-2]["class_name"] = "Reshape"
    with pytest.raises(ValueError, match="'flatten': class Reshape is not supported"):
        keras_to_torch(model_json, arrays)


def _write_images(root, n_per_class=3, classes=("a", "b")):
    from PIL import Image

    rng = np.random.default_rng(0)
    for c in classes:
        (root / c).mkdir(parents=True)
        for i in range(n_per_class):
            Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(root / c / f"{i}.png")


def _cli(*args):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(pathlib.Path(__file__).parent), env.get("PYTHONPATH", "")])
    return subprocess.run([sys.executable, "-m", "fxbn.calibrate", *map(str, args)], capture_output=True, text=True,
                          timeout=300, env=env)


def test_cli_keras_model_then_verify_proves_every_layer(tmp_path):
    pytest.importorskip("PIL")
    model_json, arrays = resnet8_like()
    (tmp_path / "m.model.json").write_text(json.dumps(model_json))
    np.savez(tmp_path / "m.npz", **arrays)
    _write_images(tmp_path / "img")
    r = _cli(tmp_path / "m.model.json", tmp_path / "img", "--input-scale", "unit", "--out", tmp_path / "acts.json",
             "--layers-out", tmp_path / "layers")
    assert r.returncode == 0, r.stderr
    assert "float top-1 on 6 labelled images" in r.stdout
    assert "bn_2: affine from truediv" in r.stdout and "bn: conv_bn from conv2d, folded activation relu6" in r.stdout
    acts = json.loads((tmp_path / "acts.json").read_text())
    assert acts["layers"]["bn_2"]["kind"] == "affine" and acts["calibration"]["input_scale"] == "unit"
    assert sorted(p.name for p in (tmp_path / "layers").iterdir()) == ["bn.json", "bn_1.json", "bn_2.json"]
    v = subprocess.run([sys.executable, "-m", "verify", tmp_path / "m.npz", "--activations", tmp_path / "acts.json",
                        "--method", "breakpoints"], capture_output=True, text=True, timeout=300)
    assert v.returncode == 0, v.stdout + v.stderr
    assert sorted(line.split()[1].rstrip(":") for line in v.stdout.splitlines() if line.startswith("PROVED")) == \
        ["bn", "bn_1", "bn_2"]
    r = _cli(tmp_path / "m.model.json", tmp_path / "img", "--out", tmp_path / "x.json")
    assert r.returncode == 2 and "--input-scale" in r.stderr          # scaling is never guessed
    r = _cli(tmp_path / "m.model.json", tmp_path / "nowhere", "--input-scale", "raw", "--out", tmp_path / "x.json")
    assert r.returncode == 64 and "not found" in r.stderr


def test_cli_torch_state_dict_with_arch_and_verify_builds_affine_layers(tmp_path):
    """A pre-activation network as a state_dict: the CLI records which BNs are affine; verify builds those from
    the file (the name-based pairing of the state_dict alone would pair bn1 with conv1) and they equal
    from_torch's."""
    pytest.importorskip("PIL")
    from test_import_torch import PreActNet, _randomize_bn

    torch.manual_seed(0)
    model = _randomize_bn(PreActNet())
    np.savez(tmp_path / "net.npz", **{k: v.numpy() for k, v in model.state_dict().items()})
    _write_images(tmp_path / "img", classes=tuple("abcdefghij"))
    r = _cli(tmp_path / "net.npz", tmp_path / "img", "--input-scale", "symmetric", "--arch",
             "test_import_torch:PreActNet", "--out", tmp_path / "acts.json")
    assert r.returncode == 0, r.stderr
    acts = json.loads((tmp_path / "acts.json").read_text())
    assert acts["layers"]["layer1.1.bn1"]["kind"] == "affine" and acts["layers"]["layer1.0.bn2"]["conv"] == \
        "layer1.0.conv1"
    from verify import model as vmodel

    loaded = vmodel.load_model(tmp_path / "net.npz")
    file_acts = vmodel.load_activations(tmp_path / "acts.json")
    with pytest.raises(vmodel.ModelError, match="names conv 'conv1', but .* pairs it with 'layer1.0.conv1'"):
        vmodel.build_layers([loaded], file_acts)           # the naming convention alone pairs it wrongly
    vmodel.apply_data_flow([loaded], file_acts)
    built = {name: layer for name, layer, _ in vmodel.build_layers([loaded], file_acts)}
    assert loaded.skipped == []
    assert set(built) == {"layer1.0.bn1", "layer1.0.bn2", "layer1.1.bn1", "layer1.1.bn2", "bn"}
    assert built["layer1.1.bn1"].in_dtype == np.int8 and built["bn"].in_dtype == np.int8
    a = {k: importers.ActivationQuant(**{f: v[f] for f in ("scale", "zero_point", "dtype", "qmin", "qmax")})
         for k, v in ((n, e["in"]) for n, e in acts["layers"].items())}
    o = {k: importers.ActivationQuant(**{f: v[f] for f in ("scale", "zero_point", "dtype", "qmin", "qmax")})
         for k, v in ((n, e["out"]) for n, e in acts["layers"].items())}
    ours = importers.from_torch(model, a, o, strict=True)
    for name, info in ours.items():
        for attr in ("multiplier", "bias", "shift", "in_range"):
            assert np.array_equal(getattr(info.layer, attr), getattr(built[name], attr)), (name, attr)
    v = subprocess.run([sys.executable, "-m", "verify", tmp_path / "net.npz", "--activations", tmp_path / "acts.json",
                        "--method", "breakpoints"], capture_output=True, text=True, timeout=300)
    assert v.returncode == 0 and v.stdout.count("PROVED ") == 5, v.stdout + v.stderr


def test_cli_real_resnet20_top1_shows_a_wrong_scaling(tmp_path):
    """ResNet-20 on 20 lossless CIFAR-10 images: 20/20 with the right scaling; stating raw 0..255 pixels instead of
    [0, 1] is visible in the printed float top-1."""
    pytest.importorskip("PIL")
    path = DATA_DIR / "cifar10" / "resnet20.npz"
    if not path.exists():
        pytest.skip(f"shared data not found: {path}")
    img = tmp_path / "img"
    img.mkdir()
    lines = []
    for f in sorted((DATA_DIR / "cifar10" / "lossless").glob("*.png")):
        (img / f.name).symlink_to(f)
        lines.append(f"{f.name} {f.stem.rsplit('_', 1)[1]}")
    (img / "labels.txt").write_text("\n".join(lines) + "\n")
    common = [path, img, "--arch", "test_import:resnet20_module", "--mean", "0.485", "0.456", "0.406",
              "--std", "0.229", "0.224", "0.225", "--out", tmp_path / "acts.json"]
    r = _cli(*common, "--input-scale", "unit")
    assert r.returncode == 0, r.stderr
    assert "float top-1 on 20 labelled images: 100.00%" in r.stdout
    r = _cli(*common, "--input-scale", "raw")
    top1 = float(r.stdout.split("labelled images: ")[1].split("%")[0])
    assert top1 < 50
