"""verify.lemmas: every datapath lemma is proved; each deliberately wrong variant is refuted with a signed witness."""
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


def test_monotone_without_overflow_bound_counterexample():
    cex = lemmas.prove("monotone_increasing", "int8", 32, wrong=True)["counterexample"]
    wrap = lambda v: (v + (1 << 31)) % (1 << 32) - (1 << 31)  # noqa: E731
    sh = min(cex["s"], 31)
    y = lambda acc: min(max(acc >> sh, cex["qmin"]), cex["qmax"])  # noqa: E731
    assert cex["A"] >= 0 and y(cex["acc"]) > y(wrap(cex["acc"] + cex["A"]))


# ------------------------------------------------------------------------------------------------ SIMD bodies
SIMD_CONFIGS = [(name, in_dtype, w) for name, (_, _, widths, dtypes) in sorted(lemmas.SIMD_LEMMAS.items())
                for in_dtype, w in [(dtypes[0], widths[0])]]


@pytest.mark.parametrize("name,in_dtype,acc", SIMD_CONFIGS)
def test_simd_lemma_proved(name, in_dtype, acc):
    r = lemmas.prove(name, in_dtype, acc, timeout_ms=20000)
    assert r["status"] == "proved", r


@pytest.mark.parametrize("name,in_dtype,acc,variant", [(n, d, w, v) for n, d, w in SIMD_CONFIGS
                                                        for v in lemmas.SIMD_WRONG[n]])
def test_simd_wrong_variant_refuted(name, in_dtype, acc, variant):
    r = lemmas.prove(name, in_dtype, acc, wrong=variant, timeout_ms=20000)
    assert r["status"] == "refuted", r
    assert all(isinstance(v, int) for v in r["counterexample"].values())
    if variant in ("zero_extend", "logical_shift"):
        # these differ from the kernel only on negative values: the model must report them signed
        assert any(v < 0 for v in r["counterexample"].values()), r


def test_simd_lemmas_registered_for_the_cli():
    names = {r["name"] for r in lemmas.prove_all(("int8",), (32,), timeout_ms=20000)}
    assert {"lut_rows", "dp_periodic"} <= names


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


def test_dp_zero_extend_counterexample_is_real():
    r = lemmas.prove("dp_periodic", "int8", 32, wrong="zero_extend")
    c = r["counterexample"]
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


def test_simd_multi_claim_smt2_replays(tmp_path):
    import z3

    path = tmp_path / "lemma.widen_rows_low.smt2"
    assert lemmas.prove("widen_rows_low", "int8", 64, smt2_path=str(path))["status"] == "proved"
    ctx = z3.Context()                                 # keep a reference: a temporary context is freed mid-call
    res = z3.Z3_eval_smtlib2_string(ctx.ref(), path.read_text()).split()
    assert res == ["unsat"] * 4, res
