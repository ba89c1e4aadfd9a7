"""verify.lemmas.codegen_expression: the emitted C expression (built from fxbn.codegen.EXPR) is UB-free and equals
clamp(floor((A*x + B) / 2^s)) at the emitted widths; wrong templates are refuted with real counterexamples."""
import pytest

pytest.importorskip("z3")
from fxbn import codegen  # noqa: E402
from verify import lemmas  # noqa: E402


@pytest.mark.parametrize("in_dtype,acc", [("uint8", 32), ("int16", 32), ("int32", 32), ("int16", 64)])
def test_codegen_expression_proved(in_dtype, acc):
    r = lemmas.prove("codegen_expression", in_dtype, acc, timeout_ms=60000)
    assert r["status"] == "proved", r


@pytest.mark.parametrize("variant", lemmas.CODEGEN_WRONG)
@pytest.mark.parametrize("in_dtype", ["int8", "int16"])
def test_codegen_wrong_variants_refuted(variant, in_dtype):
    r = lemmas.prove("codegen_expression", in_dtype, 32, wrong=variant, timeout_ms=60000)
    assert r["status"] == "refuted", r


def _c_trunc_div(a, d):
    q = abs(a) // d
    return q if a >= 0 else -q


def test_trunc_div_counterexample_is_a_real_c_difference():
    """Replayed in Python with C99's semantics: either 1 << S is undefined, or / and >> give different outputs."""
    c = lemmas.prove("codegen_expression", "int8", 32, wrong="trunc_div")["counterexample"]
    S = min(c["s"], 31)
    acc = c["A"] * c["x"] + c["B"]
    assert -(1 << 31) <= acc < (1 << 31)
    clamp = lambda v: min(max(v, c["qmin"]), c["qmax"])  # noqa: E731
    assert S >= 31 or clamp(_c_trunc_div(acc, 1 << S)) != clamp(acc >> c["s"])


def test_uncapped_shift_counterexample_shifts_past_the_width():
    c = lemmas.prove("codegen_expression", "int16", 32, wrong="uncapped_shift")["counterexample"]
    assert 32 <= c["s"] <= 62


def test_lemma_follows_the_codegen_template(monkeypatch):
    """The lemma is built from fxbn.codegen.EXPR: a wrong template there (bias added after the shift) is refuted."""
    assert lemmas.prove("codegen_expression", "int8", 32)["status"] == "proved"
    monkeypatch.setattr(codegen, "EXPR", (("p", "mul", "A", "x"), ("acc", "shr", "p", "S"),
                                          ("q", "add", "acc", "B"), codegen.EXPR[-1]))
    assert lemmas.prove("codegen_expression", "int8", 32)["status"] == "refuted"
