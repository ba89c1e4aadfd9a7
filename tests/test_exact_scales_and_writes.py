"""(1) The conv accumulator's scale act.scale * w_scale[c] is used only when that float64 product is exact:
quantize_weights and calibrate_values return float32 scales (as ONNX, TFLite and PyTorch store them; two float32
values multiply exactly in float64), and conv_bn_layer refuses a product that would round, naming the channel and
both scales.  (2) Every file writer is all or nothing: a failure midway (disk full, a failed rename) leaves the old
files untouched and no temporary behind; a .h/.c pair is never half new."""
import builtins
import errno
import io
import json
import os
from fractions import Fraction

import numpy as np
import pytest

import fxbn
from fxbn import codegen, importers


def is_float32(values):
    v = np.asarray(values, np.float64)
    return bool(np.all(v.astype(np.float32).astype(np.float64) == v))


# ------------------------------------------------------------------------------------------------ (1) exact scales
def _bn(channels):
    rng = np.random.default_rng(5)
    return importers.BatchNormParams(rng.uniform(0.5, 2, channels), rng.uniform(-0.3, 0.3, channels),
                                     rng.uniform(-0.2, 0.2, channels), rng.uniform(0.5, 2, channels), 1e-5)


def test_a_rounded_scale_product_is_refused_naming_the_channel_and_both_scales():
    act = importers.ActivationQuant(0.1, 0)                     # a float64 scale (53-bit significand)
    w_scale = np.array([0.25, float(np.float32(1 / 3))])        # 0.1 * 0.25 is exact, 0.1 * (1/3)f32 is not
    assert Fraction(0.1 * w_scale[0]) == Fraction(0.1) * Fraction(w_scale[0])
    assert Fraction(0.1 * w_scale[1]) != Fraction(0.1) * Fraction(w_scale[1])
    w_q = np.array([[1, -2, 3], [4, 5, -6]], np.int8)
    with pytest.raises(ValueError, match=r"channel 1: .*0\.1 \* 0\.3333333432674408 is not exactly a float64"):
        importers.conv_bn_layer(_bn(2), w_q, w_scale, act, importers.ActivationQuant(0.05, 0))


def test_float32_scales_pass_and_the_layer_holds_the_exact_product():
    rng = np.random.default_rng(11)
    w = rng.normal(0, 0.2, (6, 3, 3, 3))
    act_in = importers.calibrate_values(rng.normal(0.4, 1.3, 5000))
    act_out = importers.calibrate_values(rng.uniform(-1, 4, 5000))
    w_q, w_scale = importers.quantize_weights(w)
    layer = importers.conv_bn_layer(_bn(6), w_q, w_scale, act_in, act_out, relu=True)
    in_scale = layer.source["in_scale"].tolist()
    assert all(Fraction(p) == Fraction(act_in.scale) * Fraction(s) for p, s in zip(in_scale, w_scale.tolist()))
    x = np.stack([layer.in_range[:, 0], layer.in_range[:, 1], layer.in_range.sum(axis=1) // 2]).astype(np.int32)
    assert np.array_equal(layer.apply(x), layer.reference(x))


def test_quantize_weights_scales_are_float32_and_the_weights_are_quantized_with_them():
    rng = np.random.default_rng(2)
    w = rng.normal(size=(7, 4, 3, 3)) * np.array([1e-3, 0.1, 1, 10, 0, 1e-30, 3e5])[:, None, None, None]
    w_q, w_scale = importers.quantize_weights(w)
    assert w_scale.dtype == np.float64 and is_float32(w_scale)
    peak = np.abs(w.reshape(7, -1)).max(axis=1)
    nonzero = peak > 0
    assert np.all(w_scale[nonzero] >= peak[nonzero] / 127) and w_scale[~nonzero].tolist() == [1.0]
    # the smallest float32 at least peak / 127
    assert np.all(np.nextafter(w_scale[nonzero].astype(np.float32), np.float32(0)) < peak[nonzero] / 127)
    assert np.array_equal(w_q, np.round(w / w_scale[:, None, None, None]).astype(np.int8))
    assert np.abs(w_q.astype(np.int64)).max() <= 127
    with pytest.raises(ValueError, match="channel 0: .* beyond float32"):
        importers.quantize_weights(np.array([[1e300, 1.0]]))


def test_calibrated_activation_scale_is_float32_and_covers_the_range():
    rng = np.random.default_rng(4)
    for x in (rng.normal(0.3, 2.1, 1000), rng.uniform(0, 7.3, 1000), np.array([-1e-5, 3e-7])):
        act = importers.calibrate_values(x)
        assert is_float32([act.scale]) and act.scale >= (max(x.max(), 0) - min(x.min(), 0)) / 255


# --------------------------------------------------------------------------------------------- (2) all or nothing
@pytest.fixture
def disk_full(monkeypatch, tmp_path):
    """Writes under tmp_path fail with ENOSPC after `budget` bytes (the bytes before it do reach the file)."""
    state = {"budget": None}
    real_open, real_fdopen = builtins.open, os.fdopen

    class Full:
        def __init__(self, f):
            self.f = f

        def write(self, data):
            if len(data) > state["budget"]:
                self.f.write(data[:state["budget"]])
                self.f.flush()
                raise OSError(errno.ENOSPC, "No space left on device (test)")
            state["budget"] -= len(data)
            return self.f.write(data)

        def __getattr__(self, name):
            return getattr(self.f, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

    def wrap(f, mode, where):
        inside = str(where).startswith(str(tmp_path)) or isinstance(where, int)
        return Full(f) if state["budget"] is not None and inside and any(m in mode for m in "wax") else f

    def fake_open(file, mode="r", *args, **kwargs):
        return wrap(real_open(file, mode, *args, **kwargs), mode, file)

    def fake_fdopen(fd, mode="r", *args, **kwargs):
        return wrap(real_fdopen(fd, mode, *args, **kwargs), mode, fd)

    monkeypatch.setattr(builtins, "open", fake_open)
    monkeypatch.setattr(io, "open", fake_open)
    monkeypatch.setattr(os, "fdopen", fake_fdopen)
    return state


def _layers():
    """Two layers whose .h files differ too (channel count, types)."""
    rng = np.random.default_rng(3)

    def make(c, in_dtype):
        return fxbn.from_batchnorm(rng.uniform(0.5, 2, c), rng.uniform(-0.3, 0.3, c), rng.uniform(-0.2, 0.2, c),
                                   rng.uniform(0.5, 2, c), 1e-5, in_scale=0.05, out_scale=0.04, in_dtype=in_dtype,
                                   rounding="half_up")

    return make(3, "int8"), make(4, "int16")


def _snapshot(directory):
    return {p: open(os.path.join(directory, p), "rb").read() for p in sorted(os.listdir(directory))}


def _fail_rename_to(monkeypatch, suffix):
    """os.replace raising for a destination ending in `suffix` (the others renamed); returns the real os.replace."""
    real_replace = os.replace

    def replace(src, dst):
        if str(dst).endswith(suffix):
            raise OSError(errno.EIO, "rename failed (test)")
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    return real_replace


def test_to_c_failed_second_rename_keeps_the_old_pair(tmp_path, monkeypatch):
    old, new = _layers()
    fresh, tmp_path = tmp_path / "fresh", tmp_path / "out"
    codegen.layer_to_c(old, str(tmp_path), "bn")
    before = _snapshot(tmp_path)
    assert sorted(before) == ["bn.c", "bn.h"]
    real_replace = _fail_rename_to(monkeypatch, "bn.c")
    with pytest.raises(OSError, match="rename failed"):
        codegen.layer_to_c(new, str(tmp_path), "bn")
    assert _snapshot(tmp_path) == before                 # the old .h is back beside the old .c, no temporary left
    with pytest.raises(OSError, match="rename failed"):
        codegen.layer_to_c(new, str(fresh), "bn")
    assert os.listdir(fresh) == []                       # no .h without its .c
    monkeypatch.setattr(os, "replace", real_replace)
    codegen.layer_to_c(new, str(tmp_path), "bn")
    after = _snapshot(tmp_path)
    assert sorted(after) == ["bn.c", "bn.h"] and after["bn.h"] != before["bn.h"] and after["bn.c"] != before["bn.c"]


def test_to_c_disk_full_keeps_the_old_pair(tmp_path, disk_full):
    old, new = _layers()
    codegen.layer_to_c(old, str(tmp_path), "bn")
    before = _snapshot(tmp_path)
    disk_full["budget"] = len(before["bn.h"]) + 100      # the header fits, the source does not
    with pytest.raises(OSError, match="No space"):
        codegen.layer_to_c(new, str(tmp_path), "bn")
    assert _snapshot(tmp_path) == before


def test_write_activations_template_disk_full_keeps_the_old_file(tmp_path, disk_full, capsys):
    pytest.importorskip("z3")
    from verify import __main__ as verify_main
    from test_verify_model import state_dict

    np.savez(tmp_path / "net.npz", **state_dict())
    tpl = tmp_path / "template.json"
    tpl.write_text("{\"mine\": 1}\n")
    disk_full["budget"] = 50
    code = verify_main.main(["--quiet", str(tmp_path / "net.npz"), "--write-activations-template", str(tpl)])
    disk_full["budget"] = None
    assert code != 0 and "No space left" in capsys.readouterr().err
    assert tpl.read_text() == "{\"mine\": 1}\n" and sorted(os.listdir(tmp_path)) == ["net.npz", "template.json"]
    assert verify_main.main(["--quiet", str(tmp_path / "net.npz"), "--write-activations-template", str(tpl)]) == 0
    assert "layers" in json.loads(tpl.read_text())


def test_calibrate_out_disk_full_keeps_the_old_file(tmp_path, disk_full):
    pytest.importorskip("torch")
    pytest.importorskip("PIL")
    from fxbn import calibrate
    from test_import_keras_cli import _write_images, resnet8_like

    model_json, arrays = resnet8_like()
    (tmp_path / "m.model.json").write_text(json.dumps(model_json))
    np.savez(tmp_path / "m.npz", **arrays)
    _write_images(tmp_path / "img")
    out = tmp_path / "acts.json"
    out.write_text("old\n")
    args = [str(tmp_path / "m.model.json"), str(tmp_path / "img"), "--input-scale", "unit", "--out", str(out)]
    disk_full["budget"] = 100
    with pytest.raises(OSError, match="No space"):
        calibrate.main(args)
    disk_full["budget"] = None
    assert out.read_text() == "old\n"
    assert sorted(os.listdir(tmp_path)) == ["acts.json", "img", "m.model.json", "m.npz"]
    assert calibrate.main(args) == 0 and json.loads(out.read_text())["layers"]


def test_write_files_undoes_every_rename_and_leaves_no_temporary(tmp_path, monkeypatch):
    from fxbn import atomic

    paths = [tmp_path / n for n in ("a.txt", "b.txt", "c.txt")]
    paths[0].write_text("old a")
    paths[2].write_text("old c")
    real_replace, calls = os.replace, []

    def replace(src, dst):
        calls.append(dst)
        if len(calls) == 3 and str(dst).endswith("c.txt"):
            raise OSError(errno.EIO, "rename failed (test)")
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(OSError, match="rename failed"):
        atomic.write_files({p: "new" for p in paths})
    assert _snapshot(tmp_path) == {"a.txt": b"old a", "c.txt": b"old c"}     # b.txt did not exist: removed again

    def failing(f):
        f.write(b"half")
        raise RuntimeError("serialiser failed")

    with pytest.raises(RuntimeError):
        atomic.write_file(paths[0], failing)
    assert _snapshot(tmp_path) == {"a.txt": b"old a", "c.txt": b"old c"}


def test_layer_to_tosa_files_are_all_new_or_all_old(tmp_path, monkeypatch):
    pytest.importorskip("serializer.tosa_serializer")
    from fxbn import export_tosa

    old, new = _layers()
    export_tosa.layer_to_tosa(old, str(tmp_path), 4)
    before = _snapshot(tmp_path)
    _fail_rename_to(monkeypatch, "desc.json")
    with pytest.raises(OSError, match="rename failed"):
        export_tosa.layer_to_tosa(new, str(tmp_path), 5)
    assert _snapshot(tmp_path) == before


def test_verify_json_neither_half_written_nor_over_a_users_tmp_file(tmp_path, disk_full, capsys):
    pytest.importorskip("z3")
    from verify import __main__ as verify_main

    layer = _layers()[0]
    layer.save(str(tmp_path / "bn.json"))
    cert, users = tmp_path / "cert.json", tmp_path / "cert.json.tmp"
    cert.write_text("old certificate\n")
    users.write_text("the user's own file\n")
    argv = ["--quiet", "--method", "breakpoints", "--json", str(cert), str(tmp_path / "bn.json")]
    disk_full["budget"] = 100
    assert verify_main.main(argv) == 64 and "No space left" in capsys.readouterr().err
    disk_full["budget"] = None
    assert cert.read_text() == "old certificate\n" and sorted(os.listdir(tmp_path)) == ["bn.json", "cert.json",
                                                                                        "cert.json.tmp"]
    assert verify_main.main(argv) == 0 and json.loads(cert.read_text())["layers"]
    assert users.read_text() == "the user's own file\n"


def _fake_graph(layers_by_node):
    from types import SimpleNamespace

    nodes = [SimpleNamespace(name=name, op="bn") for name in layers_by_node]
    return SimpleNamespace(nodes=nodes, q={name: {"layers": layers} for name, layers in layers_by_node.items()})


@pytest.mark.parametrize("ext", [".json", ".npz"])
def test_record_bytes_hold_the_record_save_writes(tmp_path, ext):
    old, _ = _layers()
    saved, raw = str(tmp_path / f"saved{ext}"), str(tmp_path / f"raw{ext}")
    old.save(saved)
    with open(raw, "wb") as f:
        f.write(fxbn.io.record_bytes(old.to_dict(), raw))
    assert fxbn.io.read_record(raw) == fxbn.io.read_record(saved)
    assert fxbn.load(raw).to_dict() == old.to_dict()


def test_save_layers_writes_the_set_all_or_nothing(tmp_path, monkeypatch):
    from fxbn.onnx import quantize as fq

    old, new = _layers()
    out = tmp_path / "layers"
    saved = fq.save_layers(_fake_graph({"bn1": [old], "bn2": [old, old]}), str(out))
    assert [os.path.basename(p) for _, p in saved] == ["bn1.json", "bn2.json", "bn2.leaky.json"]
    before = _snapshot(out)
    real_replace = _fail_rename_to(monkeypatch, "bn2.leaky.json")      # the last of the three renames fails
    with pytest.raises(OSError, match="rename failed"):
        fq.save_layers(_fake_graph({"bn1": [new], "bn2": [new, new]}), str(out))
    assert _snapshot(out) == before                    # bn1 and bn2 (renamed first) are the old ones again
    fresh = tmp_path / "fresh"
    with pytest.raises(OSError, match="rename failed"):
        fq.save_layers(_fake_graph({"bn1": [new], "bn2": [new, new]}), str(fresh))
    assert os.listdir(fresh) == []
    monkeypatch.setattr(os, "replace", real_replace)
    fq.save_layers(_fake_graph({"bn1": [new], "bn2": [new, new]}), str(out))
    assert all(fxbn.load(str(out / n)).to_dict() == new.to_dict() for n in before)
