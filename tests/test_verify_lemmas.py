"""verify.lemmas: every datapath lemma is proved; each deliberately wrong variant is refuted with a signed witness."""
import inspect

import pytest

pytest.importorskip("z3")
from verify import lemmas  # noqa: E402

CONFIGS = [("int8", 32), ("int32", 64)]


@pytest.mark.parametrize("name", sorted(lemmas.LEMMAS))
@pytest.mark.parametrize("in_dtype,acc", CONFIGS)
def test_lemma_proved(name, in_dtype, acc):
    r = lemmas.prove(name, in_dtype, acc, timeout_ms=60000)
    assert r["status"] == "proved", r


@pytest.mark.parametrize("name", sorted(lemmas.LEMMAS))
def test_wrong_variant_refuted(name):
    r = lemmas.prove(name, "int8", 32, wrong=True, timeout_ms=60000)
    assert r["status"] == "refuted", r
    assert all(isinstance(v, int) for v in r["counterexample"].values())


def test_logical_shift_counterexample_is_a_real_floor_violation():
    cex = lemmas.prove("shift_is_floor", "int8", 32, wrong=True)["counterexample"]
    acc, s = cex["acc"], cex["s"]
    assert acc < 0                                   # signed value reported, not z3's unsigned print
    logical = (acc & 0xFFFFFFFF) >> min(s, 31)
    assert logical != acc >> s                        # Python >> on ints is floor division


def test_int32_accumulator_overflow_counterexample():
    cex = lemmas.prove("fits_sign_extends", "int32", 64, wrong=True)["counterexample"]
    E = cex["E"]
    assert -(1 << 63) <= E < (1 << 63) and not -(1 << 31) <= E < (1 << 31)


@pytest.mark.parametrize("in_dtype", sorted(lemmas.IN_BITS))
@pytest.mark.parametrize("acc", [32, 64])
def test_product_width_one_bit_short_counterexample(in_dtype, acc):
    """The width the SIMD lemmas compute A*x on is the smallest exact one: one bit fewer overflows."""
    bits, signed = lemmas.IN_BITS[in_dtype]
    assert lemmas.prove("product_width", in_dtype, acc)["status"] == "proved"
    r = lemmas.prove("product_width", in_dtype, acc, wrong=True)
    assert r["status"] == "refuted", r
    A, x = r["counterexample"]["A"], r["counterexample"]["x"]
    assert (-(1 << (bits - 1)) <= x < (1 << (bits - 1))) if signed else (0 <= x < (1 << bits))
    c = next(c for c in sorted({16, 32, acc}) if -(1 << (c - 1)) <= A < (1 << (c - 1)))
    assert not -(1 << (c + bits - 2)) <= A * x < (1 << (c + bits - 2))


def test_monotone_without_overflow_bound_counterexample():
    cex = lemmas.prove("monotone_increasing", "int8", 32, wrong=True)["counterexample"]
    wrap = lambda v: (v + (1 << 31)) % (1 << 32) - (1 << 31)  # noqa: E731
    sh = min(cex["s"], 31)
    y = lambda acc: min(max(acc >> sh, cex["qmin"]), cex["qmax"])  # noqa: E731
    assert cex["A"] >= 0 and y(cex["acc"]) > y(wrap(cex["acc"] + cex["A"]))


# ------------------------------------------------------------------------------------------------ SIMD bodies
SIMD_CONFIGS = [(name, in_dtype, w) for name, (_, _, widths, dtypes) in sorted(lemmas.SIMD_LEMMAS.items())
                for in_dtype, w in [(dtypes[0], widths[0])]]
SIMD_ALL = [(name, in_dtype, w) for name, (_, _, widths, dtypes) in sorted(lemmas.SIMD_LEMMAS.items())
            for w in widths for in_dtype in dtypes]
WIDEN = [n for n in sorted(lemmas.SIMD_LEMMAS) if n.startswith("widen_")]


@pytest.mark.parametrize("name,in_dtype,acc", SIMD_ALL)
def test_simd_lemma_proved(name, in_dtype, acc):
    """Every configuration prove_all runs by default (widen with int32 inputs included) is proved, each well
    inside the 10 s per-lemma budget (typically 0.1-0.3 s; the limit only catches an encoding that went slow)."""
    r = lemmas.prove(name, in_dtype, acc, timeout_ms=20000)
    assert r["status"] == "proved", r
    assert r["seconds"] < 10, r


def test_widen_int32_in_the_default_set():
    for name in WIDEN:
        assert "int32" in lemmas.SIMD_LEMMAS[name][3]
    assert "int32" in inspect.signature(lemmas.prove_all).parameters["in_dtypes"].default


@pytest.mark.parametrize("name,in_dtype,acc,variant", [(n, d, w, v) for n, d, w in SIMD_CONFIGS
                                                        for v in lemmas.SIMD_WRONG[n]])
def test_simd_wrong_variant_refuted(name, in_dtype, acc, variant):
    r = lemmas.prove(name, in_dtype, acc, wrong=variant, timeout_ms=20000)
    assert r["status"] == "refuted", r
    assert all(isinstance(v, int) for v in r["counterexample"].values())
    if variant in ("zero_extend", "logical_shift"):
        # these differ from the kernel only on negative values: the model must report them signed
        assert any(v < 0 for v in r["counterexample"].values()), r


@pytest.mark.parametrize("name,variant", [(n, v) for n in WIDEN for v in lemmas.SIMD_WRONG[n]])
def test_widen_int32_wrong_variant_refuted(name, variant):
    r = lemmas.prove(name, "int32", 64, wrong=variant, timeout_ms=20000)
    assert r["status"] == "refuted", r
    assert all(isinstance(v, int) for v in r["counterexample"].values())


def _s64(v):
    v &= (1 << 64) - 1
    return v - (1 << 64) if v >> 63 else v


def test_widen_int32_zero_extend_counterexample_is_a_wrong_product():
    """vpmuludq (zero-extended dwords) on the reported operands (A and the dword X vpmuldq reads, x * 2^xk) is not
    the exact product A*X."""
    c = lemmas.prove("widen_rows_low", "int32", 64, wrong="zero_extend")["counterexample"]
    assert -(1 << 31) <= c["A"] < (1 << 31)
    assert any(_s64((c["A"] & 0xFFFFFFFF) * (c[x] & 0xFFFFFFFF)) != c["A"] * c[x] for x in ("X_even", "X_odd")), c


@pytest.mark.parametrize("name", ["widen_rows_high", "widen_periodic_high", "widen_periodic_low"])
def test_input_shift_past_headroom_counterexample_overflows(name):
    """Scaling int16 inputs by 2^17 (one past the kernel's limit): the reported x * 2^xk leaves int32."""
    c = lemmas.prove(name, "int16", 64, wrong="input_shift_past_headroom")["counterexample"]
    pairs = [("x_even", "xk" if "xk" in c else "xk_even"), ("x_odd", "xk" if "xk" in c else "xk_odd")]
    assert any(not -(1 << 31) <= c[x] * 2 ** c[k] < (1 << 31) for x, k in pairs), c
    assert max(c[k] for _, k in pairs) == 17, c


def test_simd_lemmas_registered_for_the_cli():
    names = {r["name"] for r in lemmas.prove_all(("int8",), (32,), timeout_ms=20000)}
    assert {"lut_rows", "dp_periodic", "neon_mul32", "neon_narrow"} <= names


@pytest.mark.parametrize("in_dtype", ["int8", "uint8"])
def test_lut_index_map_exhaustive(in_dtype):
    assert lemmas.lut_index_map(in_dtype) == []


def _kernel_dp(A, B, s, qmin, qmax, x):
    """Plain-Python vpdpwssd model with zero-extended words (the wrong variant) for replaying its counterexample."""
    u16 = lambda v, k: (v >> (16 * k)) & 0xFFFF  # noqa: E731
    xl, al = x & 0xFFFFFFFF, A & 0xFFFF
    acc = (B + u16(xl, 0) * u16(al, 0) + u16(xl, 1) * u16(al, 1)) & 0xFFFFFFFF
    acc -= (acc >> 31) << 32
    return min(max(acc >> s, qmin), qmax)


@pytest.mark.parametrize("in_dtype", ["int8", "uint8", "int16"])
def test_dp_zero_extend_counterexample_is_real(in_dtype):
    r = lemmas.prove("dp_periodic", in_dtype, 32, wrong="zero_extend")
    c = r["counterexample"]
    bits, signed = lemmas.IN_BITS[in_dtype]
    assert (-(1 << (bits - 1)) <= c["x"] < (1 << (bits - 1))) if signed else (0 <= c["x"] < (1 << bits))
    assert -32768 < c["A"] < 32768 and 0 <= c["s"] <= 31 and c["qmin"] <= c["qmax"]
    exact = c["A"] * c["x"] + c["B"]
    assert -(1 << 31) <= exact < (1 << 31)
    assert _kernel_dp(c["A"], c["B"], c["s"], c["qmin"], c["qmax"], c["x"]) != min(max(exact >> c["s"], c["qmin"]),
                                                                                  c["qmax"])


def test_widen_high_logical_shift_counterexample_is_real():
    c = lemmas.prove("widen_rows_high", "int8", 64, wrong="logical_shift")["counterexample"]
    assert 32 <= c["s"] <= 63
    for lane in ("even", "odd"):
        acc = c[f"P_{lane}"] + c["B"]
        if not -(1 << 63) <= acc < (1 << 63):
            continue
        high = (acc >> 32) & 0xFFFFFFFF                      # the high dword, shifted logically
        y = min(max(high >> (c["s"] - 32), c["qmin"]), c["qmax"])
        if y != min(max(acc >> c["s"], c["qmin"]), c["qmax"]):
            return
    raise AssertionError(c)


@pytest.mark.parametrize("in_dtype", ["int8", "int32"])
def test_simd_multi_claim_smt2_replays(tmp_path, in_dtype):
    import z3

    path = tmp_path / "lemma.widen_rows_low.smt2"
    assert lemmas.prove("widen_rows_low", in_dtype, 64, smt2_path=str(path))["status"] == "proved"
    ctx = z3.Context()                                 # keep a reference: a temporary context is freed mid-call
    res = z3.Z3_eval_smtlib2_string(ctx.ref(), path.read_text()).split()
    assert res == ["unsat"] * 6, res              # per lane: the dword read, the product, the stage


# ------------------------------------------------------------------------------------------------ fxbn.onnx
def _trunc_div(a, b):
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b > 0) else -q


@pytest.mark.parametrize("w", [32, 64])
@pytest.mark.parametrize("variant", ["plain_div", "fmod1"])
def test_onnx_floor_div_wrong_variants_are_real(w, variant):
    """The exported graph's Div(Sub(acc, Mod(acc, 2^s)), 2^s) is proved at both widths; Div alone and Mod with
    fmod=1 are refuted, and the reported (acc, s) really breaks them (replayed with ONNX's integer semantics)."""
    assert lemmas.prove("onnx_floor_div", "int8", w)["status"] == "proved"
    r = lemmas.prove("onnx_floor_div", "int8", w, wrong=variant)
    assert r["status"] == "refuted", r
    acc, s = r["counterexample"]["acc"], r["counterexample"]["s"]
    assert -(1 << (w - 1)) <= acc < (1 << (w - 1)) and 0 <= s <= w - 2 and acc < 0
    d = 1 << s
    if variant == "plain_div":
        q = _trunc_div(acc, d)
    else:
        q = _trunc_div(acc - (acc - _trunc_div(acc, d) * d), d)      # fmod=1: C's remainder
    assert q != acc >> s
    assert _trunc_div(acc - acc % d, d) == acc >> s                   # the exported chain (Python %: fmod=0)


def test_onnx_floor_div_registered_for_the_cli():
    names = [r["name"] for r in lemmas.prove_all(("int8",), (32,), timeout_ms=20000)]
    assert "onnx_floor_div" in names


# ------------------------------------------------------------------------------------------------ NEON bodies
def _bv(z3, v, n):
    return z3.BitVecVal(v % (1 << n), n)


@pytest.mark.parametrize("value,count,width,want,want_logical", [
    (-7, -1, 32, -4, ((-7) % (1 << 32)) >> 1),        # a negative count: right shift (floor for sshl)
    (-7, -40, 32, -1, 0),                              # by the lane width or more: the sign / zero
    (5, 3, 32, 40, 40),                                # a positive count: left shift
    (5, 0x100 - 2, 64, 1, 1),                          # only the count's low byte counts: 0xFE is -2
    (-(1 << 62), -63, 64, -1, 1),
])
def test_neon_sshl_model(value, count, width, want, want_logical):
    """The lemmas' sshl / ushl model on concrete lanes (the Arm rule: the shift is the signed low byte of the count)."""
    z3 = pytest.importorskip("z3")
    v, c = _bv(z3, value, width), _bv(z3, count, width)
    got = z3.simplify(lemmas._sshl(z3, v, c)).as_signed_long()
    got_logical = z3.simplify(lemmas._sshl(z3, v, c, logical=True)).as_long()
    assert got == want and got_logical == want_logical % (1 << width)


def test_neon_widen_truncating_narrow_counterexample_is_real():
    """xtn for sqxtn: on the reported P, B, s the low 32 bits of the shifted sum clamp to another output than the
    exact clamp(floor((P + B) / 2^s))."""
    c = lemmas.prove("neon_widen", "int8", 64, wrong="truncating_narrow")["counterexample"]
    e = c["P"] + c["B"]
    assert -(1 << 63) <= e < (1 << 63) and 0 <= c["s"] <= 63 and c["qmin"] <= c["qmax"]
    q = e >> c["s"]
    low = (q + (1 << 31)) % (1 << 32) - (1 << 31)
    clamp = lambda v: min(max(v, c["qmin"]), c["qmax"])  # noqa: E731
    assert clamp(low) != clamp(q)


def test_onnx_div_clip_counterexample_is_real():
    """The refuted variant (a negative clamp end) is a real difference between ONNX's truncating Div and floor."""
    cex = lemmas.prove("onnx_div_clip", "int8", 32, wrong=True)["counterexample"]
    t, s, lo, hi = cex["t"], cex["s"], cex["lo"], cex["hi"]
    trunc = abs(t) // (1 << s) * (1 if t >= 0 else -1)
    clamp = lambda v: min(max(v, lo), hi)  # noqa: E731
    assert lo < 0 and clamp(trunc) != clamp(t >> s)
