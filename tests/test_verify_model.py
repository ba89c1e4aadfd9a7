"""python -m verify on model files: state_dict / Keras npz (and torch .pt) + an activations file -> the importers'
layers, proved like saved layers; usage errors name the layer; tampering is refuted."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import DATA_DIR
from fxbn import importers
from verify import __main__ as cli_main
from verify import model as vmodel
from verify import run


def f32(x):
    """x rounded to float32, held as float64: scales as deployment formats store them (two such scales
    multiply exactly, which conv_bn_layer requires)."""
    return float(np.float32(x))


pytest.importorskip("z3")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BNS = ["bn1", "layer1.0.bn1", "head.1"]


def cli(*args):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "verify", "--quiet", *args], capture_output=True, text=True,
                          cwd=ROOT, env=env, timeout=300)


def main(capsys, *args):
    """The command line in-process: (exit code, stdout, stderr)."""
    code = cli_main.main(["--quiet", *map(str, args)])
    out = capsys.readouterr()
    return code, out.out, out.err


def state_dict():
    """A small PyTorch-named model: conv1 -> bn1 (ReLU), layer1.0.conv1 -> layer1.0.bn1, Sequential head.0 (Linear)
    -> head.1 (BatchNorm1d); float32 like a real state_dict, plus an unrelated linear layer."""
    rng = np.random.default_rng(7)
    f32 = np.float32
    arrays = {"conv1.weight": rng.normal(0, 0.3, (3, 3, 3, 3)).astype(f32),
              "layer1.0.conv1.weight": rng.normal(0, 0.2, (2, 3, 3, 3)).astype(f32),
              "head.0.weight": rng.normal(0, 0.5, (2, 3)).astype(f32),
              "linear.weight": rng.normal(size=(5, 2)).astype(f32), "linear.bias": np.zeros(5, f32)}
    for bn, c in zip(BNS, (3, 2, 2)):
        arrays[f"{bn}.weight"] = rng.uniform(0.5, 1.5, c).astype(f32)
        arrays[f"{bn}.bias"] = rng.normal(0, 0.3, c).astype(f32)
        arrays[f"{bn}.running_mean"] = rng.normal(0, 0.5, c).astype(f32)
        arrays[f"{bn}.running_var"] = rng.uniform(0.3, 2.0, c).astype(f32)
        arrays[f"{bn}.num_batches_tracked"] = np.array(100, np.int64)
    return arrays


ACT_IN = {"bn1": importers.ActivationQuant(f32(0.0187), -14),
          "layer1.0.bn1": importers.ActivationQuant(f32(0.0421), -128, "int8", -128, 127),
          "head.1": importers.ActivationQuant(f32(0.05), -128, "int8", -128, 100)}
ACT_OUT = {"bn1": importers.ActivationQuant(f32(0.0421), -128), "layer1.0.bn1": importers.ActivationQuant(f32(0.03), 3),
           "head.1": importers.ActivationQuant(f32(0.07), -5)}
CONVS = {"bn1": "conv1", "layer1.0.bn1": "layer1.0.conv1", "head.1": "head.0"}


def act(a):
    return {"scale": a.scale, "zero_point": a.zero_point, "dtype": a.dtype, "qmin": a.qmin, "qmax": a.qmax}


def activations(**override):
    layers = {bn: {"conv": CONVS[bn], "in": act(ACT_IN[bn]), "out": act(ACT_OUT[bn]), "relu": bn == "bn1"}
              for bn in BNS}
    return {"format": "fxbn.activations", "version": 1, "rounding": "half_up", "eps": 1e-5, "layers": layers,
            **override}


@pytest.fixture
def files(tmp_path):
    np.savez(tmp_path / "net.npz", **state_dict())
    (tmp_path / "acts.json").write_text(json.dumps(activations()))
    return tmp_path


# ---------------------------------------------------------------------------------------------- (1) proved, = importers
def test_state_dict_npz_proved_and_equal_to_importers(files):
    cert = files / "cert.json"
    r = cli(str(files / "net.npz"), "--activations", str(files / "acts.json"), "--json", str(cert))
    assert r.returncode == 0, r.stdout + r.stderr
    lines = r.stdout.strip().splitlines()
    assert [line.split()[1].rstrip(":") for line in lines] == BNS
    assert all(line.startswith("PROVED") and "method both" in line and "shift minimal: PROVED" in line
               for line in lines)
    records = {rec["name"]: rec for rec in json.loads(cert.read_text())["layers"]}
    arrays = state_dict()
    pairs = [(f"{CONVS[bn]}.weight", bn) for bn in BNS]
    assert vmodel.load_model(files / "net.npz").pairs[0].weight == "conv1.weight"
    expected = importers.from_named_arrays(arrays, pairs, ACT_IN, ACT_OUT, eps=1e-5, relu={"bn1": True})
    for bn in BNS:
        layer = expected[bn][0]
        rec = records[bn]
        assert rec["verdict"] == "PROVED" and rec["model"]["conv"] == CONVS[bn]
        assert all(p["breakpoints"] == p["z3"] == "PROVED" for p in rec["per_channel"])
        for key, attr in (("multiplier", "multiplier"), ("bias", "bias"), ("shift", "shift"), ("in_range", "in_range")):
            assert [p[key] for p in rec["parameters"]] == getattr(layer, attr).tolist(), (bn, key)
        assert rec["out_range"] == list(layer.out_range)
    assert records["bn1"]["out_range"] == [-128, 127] and records["head.1"]["model"]["activation"] is False


def test_template_round_trip_and_overrides(files, capsys):
    tpl = files / "template.json"
    code, _, err = main(capsys, files / "net.npz", "--write-activations-template", tpl)
    assert code == 0 and "3 BN layer(s)" in err
    t = json.loads(tpl.read_text())
    assert list(t["layers"]) == BNS and t["layers"]["head.1"]["conv"] == "head.0"
    assert t["layers"]["layer1.0.bn1"]["channels"] == 2 and t["layers"]["bn1"]["in"]["scale"] is None
    code, _, err = main(capsys, files / "net.npz", "--activations", tpl)          # not filled in yet
    assert code == 64 and "'bn1'" in err and "filled in" in err
    for bn in BNS:
        t["layers"][bn]["in"].update(scale=ACT_IN[bn].scale, zero_point=ACT_IN[bn].zero_point)
        t["layers"][bn]["out"].update(scale=ACT_OUT[bn].scale, zero_point=ACT_OUT[bn].zero_point)
    tpl.write_text(json.dumps(t))
    built = {n: layer for n, layer, _ in vmodel.build_layers([vmodel.load_model(files / "net.npz")],
                                                            vmodel.load_activations(tpl), rounding="floor")}
    assert all(layer.rounding == "floor" for layer in built.values())        # --rounding overrides the file
    w_q, _ = importers.quantize_weights(state_dict()["head.0.weight"])         # null qmin/qmax: the int8 range
    full = importers.accumulator_bounds(w_q, importers.ActivationQuant(ACT_IN["head.1"].scale, -128))
    assert np.array_equal(built["head.1"].in_range, full)
    code, out, _ = main(capsys, files / "net.npz", "--activations", tpl, "--method", "breakpoints",
                        "--rounding", "half_even", "--eps", "1e-3")
    assert code == 0 and out.count("PROVED ") == 3 and "half_even" in out
    code, _, err = main(capsys, "--demo", "--activations", tpl)                # no model file to apply it to
    assert code == 64 and "no PATH is a model file" in err


# ---------------------------------------------------------------------------------------------- (2) usage errors
def test_usage_errors_name_the_layers(files):
    r = cli(str(files / "net.npz"))
    assert r.returncode == 64 and "--activations" in r.stderr
    assert all(bn in r.stderr for bn in BNS)
    acts = activations()
    del acts["layers"]["layer1.0.bn1"]
    (files / "partial.json").write_text(json.dumps(acts))
    r = cli(str(files / "net.npz"), "--activations", str(files / "partial.json"))
    assert r.returncode == 64 and "does not cover" in r.stderr and "layer1.0.bn1" in r.stderr
    assert "'bn1'" not in r.stderr and "PROVED" not in r.stdout


@pytest.mark.parametrize("change,message", [
    (lambda a: a.pop("layer1.0.bn1.running_var"), "'layer1.0.bn1': missing arrays layer1.0.bn1.running_var"),
    (lambda a: a.__setitem__("layer1.0.bn1.running_var", np.array([1.0, np.nan], np.float32)),
     "'layer1.0.bn1': var (layer1.0.bn1.running_var) is not finite at flat index 1"),
    (lambda a: a.__setitem__("bn1.running_var", np.array([1.0, -0.5, 1.0], np.float32)),
     "'bn1': running variance of channel 1 is negative"),
    (lambda a: a.__setitem__("layer1.0.bn1.bias", np.zeros(4, np.float32)),
     "'layer1.0.bn1': parameter lengths differ: gamma 2, beta 4"),
    (lambda a: a.__setitem__("conv1.weight", np.zeros((5, 3, 3, 3), np.float32)),
     "'bn1': conv weight 'conv1.weight' of shape (5, 3, 3, 3) has 5 output channels, the BN has 3"),
    (lambda a: a.__setitem__("head.0.weight", np.full((2, 3), np.inf, np.float32)),
     "'head.1': conv weight 'head.0.weight' is not finite"),
])
def test_bad_model_is_a_usage_error_naming_the_layer(files, capsys, change, message):
    arrays = state_dict()
    change(arrays)
    np.savez(files / "bad.npz", **arrays)
    code, out, err = main(capsys, files / "bad.npz", "--activations", files / "acts.json")
    assert code == 64 and out == "" and f"BN layer {message}" in err, err


@pytest.mark.parametrize("edit,message", [
    (lambda a: a["layers"]["bn1"]["in"].update(scale=-0.1), "scale must be a positive finite number"),
    (lambda a: a["layers"]["bn1"]["in"].update(qmin=50, qmax=10), "activation range"),
    (lambda a: a["layers"]["head.1"].update(relu="gelu"), "relu must be"),
    (lambda a: a["layers"]["head.1"].update(conv="layer9.conv"), "the file is for another model"),
    (lambda a: a.update(rounding="stochastic"), "rounding must be one of"),
])
def test_bad_activations_file(files, capsys, edit, message):
    acts = activations()
    edit(acts)
    (files / "bad.json").write_text(json.dumps(acts))
    code, out, err = main(capsys, files / "net.npz", "--activations", files / "bad.json")
    assert code == 64 and message in err and out == ""


def test_torch_state_dict_file(files, capsys, monkeypatch):
    torch = pytest.importorskip("torch")
    sd = {k: torch.from_numpy(np.asarray(v)) for k, v in state_dict().items()}
    torch.save({"state_dict": {f"module.{k}": v for k, v in sd.items()}, "epoch": 3}, files / "net.th.pth")
    code, out, _ = main(capsys, files / "net.th.pth", "--activations", files / "acts.json", "--method", "breakpoints")
    assert code == 0 and [line.split()[1].rstrip(":") for line in out.splitlines()] == BNS
    a = {n: layer for n, layer, _ in vmodel.build_layers([vmodel.load_model(files / "net.th.pth")],
                                                        vmodel.load_activations(files / "acts.json"))}
    b = {n: layer for n, layer, _ in vmodel.build_layers([vmodel.load_model(files / "net.npz")],
                                                        vmodel.load_activations(files / "acts.json"))}
    assert all(np.array_equal(a[n].multiplier, b[n].multiplier) and np.array_equal(a[n].bias, b[n].bias)
               for n in BNS)
    torch.save(torch.nn.Linear(2, 2), files / "module.pt")                 # a pickled module, not a state_dict
    code, _, err = main(capsys, files / "module.pt", "--activations", files / "acts.json")
    assert code == 64 and "weights_only" in err
    monkeypatch.setitem(sys.modules, "torch", None)                          # torch not importable
    code, _, err = main(capsys, files / "net.th.pth", "--activations", files / "acts.json")
    assert code == 64 and "needs torch" in err


# ---------------------------------------------------------------------------------------------- (4) no false proofs
def test_tampered_model_layer_is_refuted(files, capsys, monkeypatch):
    original = vmodel.build_layers

    def tampered(*args, **kwargs):
        out = original(*args, **kwargs)
        name, layer, info = out[1]
        A = layer.multiplier.copy()
        A[0] += 1                                                # one channel's multiplier off by one
        bad = layer.replace(multiplier=A)
        out[1] = (name, bad, info)
        return out

    monkeypatch.setattr(vmodel, "build_layers", tampered)
    code, out, _ = main(capsys, files / "net.npz", "--activations", files / "acts.json", "--method", "breakpoints")
    assert code == 1
    lines = [line for line in out.splitlines() if not line.startswith(" ")]
    assert lines[0].startswith("PROVED") and lines[2].startswith("PROVED")
    assert lines[1].startswith("REFUTED  layer1.0.bn1:") and "@example(channel=0" in out


def test_activations_bound_the_inputs_that_are_proved(files):
    """A too narrow 'in' range gives a layer proved only on that range: it refuses accumulators outside it."""
    acts = activations()
    acts["layers"]["layer1.0.bn1"]["in"].update(qmin=-128, qmax=-100)
    acts["_path"] = "narrow"
    narrow = dict((n, layer) for n, layer, _ in vmodel.build_layers([vmodel.load_model(files / "net.npz")], acts))
    wide = dict((n, layer) for n, layer, _ in vmodel.build_layers([vmodel.load_model(files / "net.npz")],
                                                                 vmodel.load_activations(files / "acts.json")))
    ln, lw = narrow["layer1.0.bn1"], wide["layer1.0.bn1"]
    assert np.all(ln.in_range[:, 1] - ln.in_range[:, 0] < lw.in_range[:, 1] - lw.in_range[:, 0])
    assert run.verify_layer(ln, method="breakpoints")["verdict"] == "PROVED"
    x = lw.in_range[:, 1].reshape(1, -1).astype(np.int32)
    with pytest.raises(ValueError, match="outside the in_range"):
        ln.apply(x)


# ---------------------------------------------------------------------------------------------- (3) real data
def test_resnet20_with_experiments_calibration(tmp_path):
    path = DATA_DIR / "cifar10" / "resnet20.npz"
    if not path.exists() or not (DATA_DIR / "cifar10" / "lossless").is_dir():
        pytest.skip(f"shared data not found: {path.parent}")
    from experiments import activations as exp_acts, data, nets

    pixels, _ = data.cifar_lossless(DATA_DIR)
    graph = nets.cifar_resnet(path)
    graph.calibrate([pixels[:8]])
    graph.quantize()
    acts = exp_acts.activations_json(graph, path)
    assert len(acts["layers"]) == 19 and acts["layers"]["bn1"]["relu"] is True
    assert acts["layers"]["layer1.0.bn2"]["relu"] is False
    (tmp_path / "acts.json").write_text(json.dumps(acts))
    cert = tmp_path / "cert.json"
    r = cli(str(path), "--activations", str(tmp_path / "acts.json"), "--method", "breakpoints", "--json", str(cert))
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.count("PROVED ") == 19 and "layer3.2.bn2: 64 ch" in r.stdout
    records = {rec["name"]: rec for rec in json.loads(cert.read_text())["layers"]}
    for node in graph.bn_nodes():              # exactly the layers of the experiments' integer pipeline
        layer = graph.q[node.name]["layers"][0]
        params = records[node.name]["parameters"]
        for key in ("multiplier", "bias", "shift", "in_range"):
            assert [p[key] for p in params] == getattr(layer, key).tolist(), (node.name, key)
    # z3 on a few channels of two layers (about 0.4 s per batchnorm channel: the whole net would take minutes)
    from verify import smt

    built = {n: layer for n, layer, _ in vmodel.build_layers([vmodel.load_model(path)],
                                                            vmodel.load_activations(tmp_path / "acts.json"))}
    for name, channels in (("bn1", (0, 15)), ("layer3.2.bn2", (63,))):
        for c in channels:
            assert smt.prove_channel_split(built[name], c)["status"] == "proved", (name, c)


def test_keras_npz_with_topology(tmp_path):
    """Keras names + X.model.json: the pairs, activations and epsilons come from the topology (Darknet-tiny)."""
    path = DATA_DIR / "imagenet" / "darknet_tiny.npz"
    if not path.exists():
        pytest.skip(f"shared data not found: {path}")
    m = vmodel.load_model(path)
    assert m.style == "keras" and m.topology.endswith("darknet_tiny.model.json") and len(m.pairs) == 15
    t = vmodel.activations_template([m])
    first = t["layers"]["batch_normalization_1"]
    assert first["conv"] == "conv2d_1" and first["relu"][0] == "leaky" and first["eps"] == 1e-3
    for entry in t["layers"].values():
        entry["in"].update(scale=f32(0.02), zero_point=-128)
        entry["out"].update(scale=0.03, zero_point=-20)
    t["_path"] = "template"
    m.pairs = m.pairs[:2]                           # keep it fast: two BN layers (four FixedPointBN with leaky)
    built = vmodel.build_layers([m], t)
    assert [n for n, _, _ in built] == ["batch_normalization_1", "batch_normalization_1.leaky",
                                        "batch_normalization_2", "batch_normalization_2.leaky"]
    for name, layer, _ in built:
        assert run.verify_layer(layer, name, method="breakpoints")["verdict"] == "PROVED"
