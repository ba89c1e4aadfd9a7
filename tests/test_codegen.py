"""fxbn.codegen: the generated C compiles cleanly (strict C99, sanitizers, aarch64/armhf under qemu-user) and its
NCHW and NHWC functions are byte-for-byte FixedPointBN.apply on every int8/int16 input of every channel, a large
sample plus the range ends for int32, and reject out-of-range inputs with the first index, output untouched."""
import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

import fxbn
from fxbn import codegen, importers
from conftest import DATA_DIR


def f32(x):
    """x rounded to float32, held as float64: scales as deployment formats store them (two such scales
    multiply exactly, which conv_bn_layer requires)."""
    return float(np.float32(x))


STRICT = ["-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic", "-O2"]
SANITIZE = STRICT[:-1] + ["-O1", "-g", "-fsanitize=undefined,address", "-fno-sanitize-recover=all",
                          "-fno-omit-frame-pointer"]
# name -> (compiler, flags, runner prefix); cross targets are static binaries run by qemu-user
TOOLCHAINS = {
    "gcc": ("gcc", STRICT, []),
    "gcc-ubsan-asan": ("gcc", SANITIZE, []),
    "aarch64-qemu": ("aarch64-linux-gnu-gcc", STRICT + ["-static"], ["qemu-aarch64"]),
    "armhf-qemu": ("arm-linux-gnueabihf-gcc", STRICT + ["-static"], ["qemu-arm"]),
}
INT32_SAMPLE = {"gcc": 100_000, "gcc-ubsan-asan": 20_000, "aarch64-qemu": 20_000, "armhf-qemu": 20_000}
REAL_SAMPLE = 2_000          # per channel of each real layer (int32 accumulators): 19 layers x 16..64 channels


def synthetic_layers():
    """Varied dtypes, roundings, relu, accumulator widths, narrow ranges (so the range check is generated)."""
    rng = np.random.default_rng(13)
    a = np.array([0.0123, -0.02, 0.31, 1.7, -0.043])
    b = np.array([1.5, 0.25, -3.0, 10.1, -7.3])
    L = {
        "i8_half_even": fxbn.from_affine(a, b, in_dtype="int8"),
        "u8_half_up_relu": fxbn.from_affine(np.abs(a), b, in_dtype="uint8", out_dtype="uint8", rounding="half_up",
                                            relu=True),
        "i8_floor_narrow": fxbn.from_affine(a, b, in_dtype="int8", rounding="floor", in_range=(-100, 90)),
        "i16_half_away": fxbn.from_affine(a / 50, b, in_dtype="int16", out_dtype="int16", rounding="half_away"),
        "i16_u16_common": fxbn.from_affine(np.abs(a) * 3, b + 100, in_dtype="int16", out_dtype="uint16",
                                           rounding="half_up", common_shift=True),
        "i16_acc32_narrow": fxbn.from_affine(a, b, in_dtype="int16", rounding="half_up", acc_bits=32,
                                             in_range=np.array([[-3000, 5000]] * 5)),
        "i32_acc64": fxbn.from_affine(a * 1e-4, b, in_dtype="int32", rounding="half_up"),
        "i32_acc32_narrow": fxbn.from_affine([0.5, -0.25, 0.013, 0.0007], [1.0, -3.0, 100.2, 2.3],
                                             in_dtype="int32", rounding="half_up", acc_bits=32,
                                             in_range=(-(1 << 14), 1 << 14)),
        "bn_i8_relu6": fxbn.from_batchnorm(rng.uniform(0.5, 2, 4), rng.normal(size=4), rng.normal(size=4),
                                           rng.uniform(0.5, 2, 4), 1e-5, in_scale=0.05, out_scale=0.04,
                                           out_zero_point=-128, in_dtype="int8", rounding="half_up", relu="relu6"),
        "i8_extreme_bias": fxbn.from_affine([1e-9, -1e-9], [-200.0, 300.0], in_dtype="int8"),
    }
    return L


def resnet20_layers(count=None):
    path = DATA_DIR / "cifar10" / "resnet20.npz"
    if not path.exists():
        return {}
    arrays = dict(np.load(path))
    pairs = importers.state_dict_conv_bn_pairs(arrays)
    act_in = {bn: importers.ActivationQuant(f32(0.03), -128 if bn != "bn1" else 0) for _, bn in pairs}
    act_out = {bn: importers.ActivationQuant(f32(0.05), -128) for _, bn in pairs}
    imported = importers.from_named_arrays(arrays, pairs, act_in, act_out, eps=1e-5, relu={bn: True for _, bn in
                                                                                        pairs[::2]})
    names = sorted(imported)[:count]
    return {"resnet20_" + n.replace(".", "_"): imported[n][0] for n in names}


def inputs(layer, sample, seed=0):
    """(1, C, K) int array: every in-range value of the input type per channel (8/16-bit), or a sample plus the
    range ends (int32)."""
    lo, hi = layer.in_range[:, 0], layer.in_range[:, 1]
    info = np.iinfo(layer.in_dtype)
    if info.bits <= 16:
        vals = np.arange(info.min, info.max + 1, dtype=np.int64)
        x = np.clip(vals[None, :], lo[:, None], hi[:, None])
    else:
        rng = np.random.default_rng(seed)
        ends = np.stack([lo, lo + 1, hi - 1, hi, np.clip(0, lo, hi), np.clip(-1, lo, hi)], axis=1)
        x = np.concatenate([ends, rng.integers(lo[:, None], hi[:, None] + 1, size=(layer.channels, sample))], 1)
        x = np.clip(x, lo[:, None], hi[:, None])
    return x[None].astype(layer.in_dtype)


def out_of_range_case(layer, x):
    """x with one input just outside its channel's range at a late position, or None if no channel is narrow."""
    info = np.iinfo(layer.in_dtype)
    for c in range(layer.channels):
        lo, hi = layer.in_range[c]
        if lo > info.min or hi < info.max:
            bad = x.copy()
            bad[0, c, -2] = lo - 1 if lo > info.min else hi + 1
            bad[0, c, -1] = lo - 1 if lo > info.min else hi + 1
            return bad
    return None


DRIVER_HEAD = r"""#include <stdio.h>
#include <stdlib.h>
#include <string.h>
"""

DRIVER_JOB = r"""
static int run_{name}(int nhwc, size_t n, size_t hw, const char *in_path, const char *out_path)
{{
    size_t count = n * {up}_CHANNELS * hw, bad = (size_t)-1;
    {in_t} *x = malloc(count * sizeof *x + 1);
    {out_t} *y = malloc(count * sizeof *y + 1);
    FILE *f;
    int rc;
    if (!x || !y) return 2;
    f = fopen(in_path, "rb");
    if (!f || fread(x, sizeof *x, count, f) != count) return 3;
    fclose(f);
    memset(y, 0xA5, count * sizeof *y);
    rc = nhwc ? {name}_nhwc(x, y, n * hw, &bad) : {name}_nchw(x, y, n, hw, &bad);
    f = fopen(out_path, "wb");
    if (!f || fwrite(y, sizeof *y, count, f) != count) return 4;
    fclose(f);
    printf("%d %lu\n", rc, rc ? (unsigned long)bad : 0UL);
    free(x);
    free(y);
    return 0;
}}
"""

DRIVER_MAIN = r"""
int main(int argc, char **argv)
{{
    int i, r = 0;
    for (i = 1; i + 5 < argc + 1 && r == 0; i += 6) {{
        int k = atoi(argv[i]), nhwc = atoi(argv[i + 1]);
        size_t n = (size_t)strtoul(argv[i + 2], NULL, 10), hw = (size_t)strtoul(argv[i + 3], NULL, 10);
        switch (k) {{
{cases}
        default: r = 5;
        }}
    }}
    return r;
}}
"""


def build_driver(layers, workdir, toolchain, steps=None):
    """Generate every layer's C into workdir, a driver calling them, compile; returns the command prefix."""
    cc, flags, runner = TOOLCHAINS[toolchain]
    srcs, parts, cases = [], [DRIVER_HEAD], []
    for k, (name, layer) in enumerate(layers.items()):
        h, c = layer.to_c(workdir, name)
        if steps is not None:                                   # a mutated template (mutation tests)
            text = open(c).read()
            good, _ = codegen.render_expr(codegen.EXPR, _OPERANDS(name, layer))
            bad, _ = codegen.render_expr(steps, _OPERANDS(name, layer))
            assert all(g in text for g in good)
            for g, b in zip(good, bad):
                text = text.replace(g, b)
            open(c, "w").write(text)
        srcs.append(c)
        parts.insert(1, f'#include "{name}.h"\n')
        parts.append(DRIVER_JOB.format(name=name, up=name.upper(), in_t=codegen._C_TYPES[layer.in_dtype.name],
                                       out_t=codegen._C_TYPES[layer.out_dtype.name]))
        cases.append(f"        case {k}: r = run_{name}(nhwc, n, hw, argv[i + 4], argv[i + 5]); break;")
    parts.append(DRIVER_MAIN.format(cases="\n".join(cases)))
    driver = os.path.join(workdir, "driver.c")
    with open(driver, "w") as f:
        f.write("".join(parts))
    exe = os.path.join(workdir, "driver")
    res = subprocess.run([cc, *flags, "-I", workdir, driver, *srcs, "-o", exe], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    return runner + [exe]


def _OPERANDS(name, layer):
    w = codegen.c_accumulator_bits(layer)
    qmin, qmax = layer.out_range
    return {"A": f"(ACC){name}_A[c]", "B": f"(ACC){name}_B[c]", "x": "(ACC)v", "S": f"{name}_S[c]",
            "QMIN": f"(ACC){codegen._lit(qmin, 'acc%d' % w)}", "QMAX": f"(ACC){codegen._lit(qmax, 'acc%d' % w)}"}


def run_checks(layers, workdir, toolchain, steps=None, sample=None):
    """Run every layer NCHW and NHWC (+ an out-of-range case) in one driver process; returns
    (mismatching layer names, inputs checked)."""
    cmd = build_driver(layers, workdir, toolchain, steps)
    jobs, expected = [], []
    for k, (name, layer) in enumerate(layers.items()):
        x = inputs(layer, sample or INT32_SAMPLE[toolchain], seed=k)
        cases = [(0, x, layer.apply(x, axis=1)),
                 (1, np.ascontiguousarray(x.transpose(0, 2, 1)), None)]
        cases[1] = (1, cases[1][1], layer.apply(cases[1][1], axis=-1))
        bad = out_of_range_case(layer, x)
        if bad is not None:
            for layout, xb in ((0, bad), (1, np.ascontiguousarray(bad.transpose(0, 2, 1)))):
                lo, hi = (layer.in_range[:, i] for i in (0, 1))
                shape = (1, -1, 1) if layout == 0 else (1, 1, -1)
                viol = (xb < lo.reshape(shape)) | (xb > hi.reshape(shape))
                first = int(np.flatnonzero(viol.reshape(-1))[0])
                with pytest.raises(ValueError, match="outside the in_range"):
                    layer.apply(xb, axis=1 if layout == 0 else -1)
                cases.append((layout, xb, first))
        for j, (layout, xin, exp) in enumerate(cases):
            ip, op = os.path.join(workdir, f"{name}.{j}.in"), os.path.join(workdir, f"{name}.{j}.out")
            xin.tofile(ip)
            n, hw = (1, xin.shape[2]) if layout == 0 else (1, xin.shape[1])
            jobs += [str(k), str(layout), str(n), str(hw), ip, op]
            expected.append((name, layer, xin, exp, op))
    res = subprocess.run(cmd + jobs, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, (res.returncode, res.stderr[-3000:])
    lines = res.stdout.split("\n")
    bad_layers, checked = set(), 0
    for (name, layer, xin, exp, op), line in zip(expected, lines):
        rc, idx = (int(v) for v in line.split())
        got = np.fromfile(op, dtype=layer.out_dtype)
        if isinstance(exp, int):                     # out of range: error code, first index, output untouched
            assert (rc, idx) == (1, exp), (name, line)
            assert bytes(got.tobytes()) == b"\xa5" * got.nbytes, name
        else:
            assert rc == 0, (name, line)
            checked += xin.size
            if got.tobytes() != exp.tobytes():
                bad_layers.add(name)
    assert len(lines) - 1 == len(expected)
    return sorted(bad_layers), checked


def _skip_unless(toolchain):
    cc, _, runner = TOOLCHAINS[toolchain]
    for tool in [cc] + runner:
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} not installed" + ("" if tool == "gcc" else " (apt-get install gcc-aarch64-linux-gnu "
                                                                     "gcc-arm-linux-gnueabihf qemu-user)"))


@pytest.fixture(scope="module")
def layers():
    return synthetic_layers()


@pytest.mark.parametrize("toolchain", sorted(TOOLCHAINS))
def test_generated_c_bit_exact(layers, toolchain, tmp_path):
    _skip_unless(toolchain)
    bad, checked = run_checks(layers, str(tmp_path), toolchain)
    assert bad == [] and checked > 10 * 65536


@pytest.mark.parametrize("toolchain", sorted(TOOLCHAINS))
def test_generated_c_resnet20_bit_exact(toolchain, tmp_path):
    _skip_unless(toolchain)
    real = resnet20_layers(None if toolchain.startswith("gcc") else 4)
    if not real:
        pytest.skip(f"shared data not found: {DATA_DIR / 'cifar10' / 'resnet20.npz'}")
    assert {codegen.c_accumulator_bits(layer) for layer in real.values()} == {64}
    bad, checked = run_checks(real, str(tmp_path), toolchain, sample=REAL_SAMPLE)
    assert bad == [] and checked > 0


@pytest.mark.parametrize("variant", ["trunc_div", "bias_after_shift"])
def test_mutated_template_is_detected(layers, variant, tmp_path):
    """The comparison catches a wrong expression: C's truncating '/' in place of '>>', or the bias added after the
    shift."""
    _skip_unless("gcc")
    if variant == "trunc_div":
        steps = tuple(("q", "div", "acc", "S") if s[0] == "q" else s for s in codegen.EXPR)
    else:
        steps = (("p", "mul", "A", "x"), ("acc", "shr", "p", "S"), ("q", "add", "acc", "B"), codegen.EXPR[-1])
    sub = {k: layers[k] for k in ("i8_half_even", "i16_half_away")}
    bad, _ = run_checks(sub, str(tmp_path), "gcc", steps)
    assert bad == sorted(sub)


def test_accumulator_width_choice(layers):
    assert codegen.c_accumulator_bits(layers["i16_acc32_narrow"]) == 32
    assert codegen.c_accumulator_bits(layers["i32_acc64"]) == 64
    for layer in layers.values():
        assert (codegen.c_accumulator_bits(layer) == 32) == bool(np.max(layer.accumulator_bits) <= 32
                                                                 and np.max(layer.multiplier_bits) <= 32)


def test_narrowest_array_types(tmp_path, layers):
    _, c = layers["i8_extreme_bias"].to_c(str(tmp_path), "eb")
    text = open(c).read()
    assert "static const int8_t eb_A[2]" in text or "static const int16_t eb_A[2]" in text
    bias_bits = max(codegen._bits(v) for v in layers["i8_extreme_bias"].bias)
    want = next(f"int{w}_t" for w in (8, 16, 32, 64) if bias_bits <= w)
    assert f"static const {want} eb_B[2]" in text
    code = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    assert "float" not in code and "double" not in code and "/" not in code   # no floating point, no division


def test_bad_name_writes_nothing(tmp_path, layers):
    with pytest.raises(ValueError, match="C identifier"):
        layers["i8_half_even"].to_c(str(tmp_path), "1bad-name")
    assert os.listdir(tmp_path) == []


def test_cli(tmp_path, layers):
    _skip_unless("gcc")
    paths = []
    for name in ("i8_half_even", "i32_acc64"):
        p = tmp_path / f"{name}.{'json' if name.startswith('i8') else 'npz'}"
        layers[name].save(str(p))
        paths.append(str(p))
    out = tmp_path / "gen"
    res = subprocess.run([sys.executable, "-m", "fxbn.codegen", "c", *paths, "--out", str(out)],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert sorted(os.listdir(out)) == ["i32_acc64.c", "i32_acc64.h", "i8_half_even.c", "i8_half_even.h"]
    for c in ("i32_acc64.c", "i8_half_even.c"):
        r = subprocess.run(["gcc", *STRICT, "-c", str(out / c), "-o", os.devnull], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
    bad = subprocess.run([sys.executable, "-m", "fxbn.codegen", "c", str(tmp_path / "missing.json"), "--out",
                          str(tmp_path / "gen2")], capture_output=True, text=True)
    assert bad.returncode != 0 and not (tmp_path / "gen2").exists()


def test_codegen_doctests():
    import doctest

    result = doctest.testmod(codegen)
    assert result.attempted > 0 and result.failed == 0


def test_static_assertions_reject_a_logical_shift(tmp_path, layers):
    """The compile-time check fails when >> is not arithmetic (simulated by redefining int32_t's shift result)."""
    _skip_unless("gcc")
    _, c = layers["i8_half_even"].to_c(str(tmp_path), "sa")
    text = open(c).read().replace("((int32_t)-5 >> 1) == -3", "((uint32_t)-5 >> 1) == -3")
    open(c, "w").write(text)
    r = subprocess.run(["gcc", *STRICT, "-c", c, "-o", os.devnull], capture_output=True, text=True)
    assert r.returncode != 0 and "negative" in r.stderr


@pytest.mark.parametrize("toolchain", sorted(TOOLCHAINS))
def test_generated_c_shared_networks_bit_exact(toolchain, tmp_path):
    """Real layers of ResNet-20, Darknet, MobileNet and ResNet-50 (int64 accumulators), both layouts, on a sample
    plus the range ends; the breakpoint neighbourhoods (T-1, T, T+1 of every level) are checked separately in
    NHWC with the same driver."""
    _skip_unless(toolchain)
    from shared_net_layers import real_layers, target_inputs

    real = real_layers()
    if not real:
        pytest.skip(f"shared data not found under {DATA_DIR}")
    if not toolchain.startswith("gcc"):
        real = dict(list(real.items())[::2])                  # qemu: one layer per network
    bad, checked = run_checks(real, str(tmp_path / "sample"), toolchain, sample=500)
    assert bad == [] and checked > 0
    cmd = build_driver(real, str(tmp_path / "sample"), toolchain)
    jobs, outs = [], []
    for k, (name, layer) in enumerate(real.items()):
        x = target_inputs(layer)                                                  # [K, C]: NHWC pixels = K
        ip, op = str(tmp_path / f"{name}.bp.in"), str(tmp_path / f"{name}.bp.out")
        x.tofile(ip)
        jobs += [str(k), "1", "1", str(x.shape[0]), ip, op]
        outs.append((name, layer, x, op))
    res = subprocess.run(cmd + jobs, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    for name, layer, x, op in outs:
        got = np.fromfile(op, dtype=layer.out_dtype).reshape(x.shape)
        assert np.array_equal(got, layer.apply(x, axis=-1)), name
