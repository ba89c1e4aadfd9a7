"""python -m verify: exit codes, JSON certificate schema, SMT-LIB2 files that replay in a fresh z3 process."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import fxbn

pytest.importorskip("z3")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def cli(*args):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "verify", "--quiet", *args], capture_output=True, text=True,
                          cwd=ROOT, env=env, timeout=300)


@pytest.fixture
def layers(tmp_path):
    good = fxbn.from_affine([0.0123, -0.37], [3.25, 0.1], in_dtype="int8", rounding="half_even")
    good.save(tmp_path / "good.json")
    bad = fxbn.FixedPointBN(good.multiplier + [1, 0], good.bias, good.shift, good.in_range, good.out_range,
                            good.rounding, good.source, "int8", "int8")
    bad.save(tmp_path / "bad.npz")
    return tmp_path


def test_exit_codes(layers, tmp_path):
    assert cli(str(layers / "good.json")).returncode == 0
    r = cli(str(layers / "bad.npz"))
    assert r.returncode == 1
    assert "REFUTED" in r.stdout and "@example(channel=0" in r.stdout
    assert cli(str(layers)).returncode == 1                       # a directory containing the bad layer
    assert cli().returncode == 64
    assert cli("--method", "magic", str(layers / "good.json")).returncode == 64
    assert cli(str(tmp_path / "missing.json")).returncode == 64
    assert cli("--jobs", "0", str(layers / "good.json")).returncode == 64


def test_unknown_exit_code_on_timeout(tmp_path):
    rng = np.random.default_rng(0)
    layer = fxbn.from_batchnorm(rng.uniform(0.5, 2, 2), [0.3, -0.2], [0.1, 0.2], [1.3, 0.7], 1e-5, in_scale=2e-7,
                                out_scale=0.05, in_dtype="int32")
    layer.save(tmp_path / "bn.json")
    r = cli("--method", "z3", "--rlimit", "1", str(tmp_path / "bn.json"))
    assert r.returncode == 2 and "UNKNOWN" in r.stdout


def test_json_certificate(layers, tmp_path):
    out = tmp_path / "cert.json"
    r = cli("--json", str(out), "--jobs", "2", str(layers / "good.json"), str(layers / "bad.npz"))
    assert r.returncode == 1
    cert = json.loads(out.read_text())
    assert cert["format"] == "fxbn.verify.certificate" and cert["solver"]["name"] == "z3"
    good, bad = cert["layers"]
    for rec in (good, bad):
        for key in ("name", "verdict", "method", "bound", "claims", "rounding", "in_dtype", "out_range", "seconds",
                    "per_channel", "refutations", "parameters", "minimality", "accumulator_bits"):
            assert key in rec
        for p in rec["parameters"]:
            assert {"multiplier", "bias", "shift", "in_range", "source"} <= set(p)
            assert all(isinstance(p[k], int) for k in ("multiplier", "bias", "shift"))
    assert good["verdict"] == "PROVED" and bad["verdict"] == "REFUTED"
    assert good["per_channel"][0]["breakpoints"] == good["per_channel"][0]["z3"] == "PROVED"
    ref = bad["refutations"][0]
    layer = fxbn.load(str(layers / "bad.npz"), check=False)
    x = np.array([[ref["x"], 0]], np.int8)
    assert int(layer.apply(x, axis=1)[0, 0]) == ref["fixed_point"]
    assert int(layer.reference(x, axis=1)[0, 0]) == ref["reference"] != ref["fixed_point"]


def test_smt2_replays_in_fresh_process(layers, tmp_path):
    d = tmp_path / "smt2"
    assert cli("--method", "z3", "--emit-smt2", str(d), str(layers / "good.json"), str(layers / "bad.npz"),
               "--lemmas", "--in-dtypes", "int8", "--acc-bits", "32").returncode == 1
    files = sorted(os.listdir(d))
    assert any(f.startswith("good.ch") for f in files) and any(f.startswith("lemma.") for f in files)
    script = ("import sys, z3\n"
              "for path in sys.argv[1:]:\n"
              "    ctx = z3.Context()\n"
              "    text = open(path).read()\n"
              "    res = z3.Z3_eval_smtlib2_string(ctx.ref(), text).split()\n"
              "    print(path.rsplit('/', 1)[-1], ','.join(res))\n")
    r = subprocess.run([sys.executable, "-c", script, *[str(d / f) for f in files]], capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    verdicts = dict(line.split(" ") for line in r.stdout.strip().splitlines())
    for f, res in verdicts.items():
        if f.startswith(("good.", "lemma.")):
            assert set(res.split(",")) == {"unsat"}, (f, res)
    assert "sat" in verdicts["bad.ch0.smt2"].split(",")


def test_bound_option(layers, tmp_path):
    out = tmp_path / "cert.json"
    r = cli("--bound", "1", "--json", str(out), str(layers / "bad.npz"))
    rec = json.loads(out.read_text())["layers"][0]
    layer = fxbn.load(str(layers / "bad.npz"), check=False)
    x = np.repeat(np.arange(-128, 128, dtype=np.int8)[:, None], 2, axis=1)
    err = np.abs(layer.apply(x).astype(int) - layer.reference(x).astype(int)).max(axis=0)   # by enumeration
    assert [p["max_error"] for p in rec["per_channel"]] == err.tolist()
    assert r.returncode == (0 if err.max() <= 1 else 1) and rec["bound"] == 1 and "<= 1" in rec["claims"][0]


def test_demo_runs_and_proves():
    r = cli("--demo", "--method", "breakpoints")
    assert r.returncode == 0 and r.stdout.count("PROVED") >= 6


def test_directory_with_other_json_files(layers, tmp_path):
    d = tmp_path / "mixed"
    d.mkdir()
    (d / "results.json").write_text(json.dumps({"network": "resnet20", "layers": []}))      # an experiments record
    fxbn.load(str(layers / "good.json")).save(d / "layer.json")
    r = cli("--method", "breakpoints", str(d))
    assert r.returncode == 0 and "PROVED" in r.stdout and "skipping" in r.stderr and "results.json" in r.stderr
    fxbn.load(str(layers / "bad.npz"), check=False).save(d / "z_bad.npz")
    assert cli("--method", "breakpoints", str(d)).returncode == 1
    only = tmp_path / "only_results"
    only.mkdir()
    (only / "results.json").write_text("{}")
    assert cli("--method", "breakpoints", str(only)).returncode == 64
    assert cli("--method", "breakpoints", str(only / "results.json")).returncode == 64
