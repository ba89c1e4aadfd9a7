"""verify.add and `python -m verify` on saved add / pool / requant / mul layers: proved when exact and minimal,
refuted on a mutated bias (exhaustive certificate) and on a non-minimal shift (z3 minimality certificate)."""
import json
import subprocess
import sys

import pytest

import fxbn

pytest.importorskip("z3")
from verify import add as vadd  # noqa: E402


@pytest.fixture(scope="module")
def layer():
    return fxbn.from_add((0.0123, 0.05), (3, -5), 0.07, 1)


def test_exact_minimal_add_is_proved(layer):
    rec = vadd.verify_add_layer(layer, method="breakpoints")
    assert rec["verdict"] == "PROVED" and rec["minimality"] == "PROVED"
    assert rec["per_channel"][0]["mismatches"] == 0


def test_mutated_bias_is_refuted(layer):
    d = layer.to_dict()
    d["bias"] += 1 << (layer.shift - 1)
    rec = vadd.verify_add_layer(fxbn.FixedPointAdd.from_dict(d), method="breakpoints", minimality=False)
    assert rec["verdict"] == "REFUTED" and rec["refutations"]
    r = rec["refutations"][0]
    assert r["fixed_point"] != r["reference"]


def test_non_minimal_shift_is_refuted(layer):
    (a1, a2), b, s = layer.multipliers, layer.bias, layer.shift
    doubled = fxbn.FixedPointAdd((2 * a1, 2 * a2), 2 * b, s + 1, layer.in_ranges, layer.out_range, layer.rounding,
                                 layer.source)
    rec = vadd.verify_add_layer(doubled, method="breakpoints")
    assert rec["per_channel"][0]["breakpoints"] == "PROVED"  # still exact
    assert rec["minimality"] == "REFUTED" and rec["verdict"] == "REFUTED"
    A1, A2, B, s1 = rec["per_channel"][0]["smaller_parameters"]
    smaller = fxbn.FixedPointAdd((A1, A2), B, s1, layer.in_ranges, layer.out_range, layer.rounding, layer.source)
    assert smaller.check_exhaustive() is None  # z3's witness really is exact at the smaller shift


def test_cli_proves_saved_ops_layers(tmp_path, layer):
    layer.save(tmp_path / "add.json")
    fxbn.from_avgpool((7, 7), 0.031, -3, 0.02, 5).save(tmp_path / "pool.json")
    fxbn.from_requant([0.0004, 0.0011], 0.05, 3, bias=[120, -40], in_range=(-20000, 20000)).save(tmp_path / "rq.npz")
    fxbn.from_mul((0.02, 0.03), (4, -2), 0.01, 1).save(tmp_path / "mul.json")
    cert = tmp_path / "cert.json"
    res = subprocess.run([sys.executable, "-m", "verify", str(tmp_path), "--method", "breakpoints", "--json",
                          str(cert)], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
    recs = {r["name"]: r for r in json.loads(cert.read_text())["layers"]}
    assert set(recs) == {"add", "pool", "rq", "mul"}
    assert all(r["verdict"] == "PROVED" and r["minimality"] == "PROVED" for r in recs.values()), res.stdout
    assert recs["add"]["form"] == "add"


def test_z3_proves_and_refutes_on_a_sub_box():
    layer = fxbn.from_add((0.0123, 0.05), (3, -5), 0.07, 1, in_ranges=((-128, -121), (-128, 127)))
    rec = vadd.verify_add_layer(layer, method="z3", minimality=False)
    assert rec["per_channel"][0]["z3"] == "PROVED"
    d = layer.to_dict()
    d["bias"] += 1 << (layer.shift - 1)
    rec = vadd.verify_add_layer(fxbn.FixedPointAdd.from_dict(d), method="z3", minimality=False)
    assert rec["per_channel"][0]["z3"] == "REFUTED" and rec["verdict"] == "REFUTED"
    r = rec["refutations"][0]
    assert r["fixed_point"] != r["reference"]
