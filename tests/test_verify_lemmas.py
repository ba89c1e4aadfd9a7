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
