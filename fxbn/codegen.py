"""C99 code generation for FixedPointBN layers: a header and a source file per layer, bit-exact with apply.

The per-element computation is the template ``EXPR`` below: the C emitter prints it, and verify.lemmas builds its
z3 term from the same steps (``codegen_expression``), so the lemma states what the emitted C computes.

>>> import fxbn, tempfile
>>> layer = fxbn.from_affine([0.3, -0.2], [1.0, 2.5], in_dtype="int8")
>>> paths = layer.to_c(tempfile.mkdtemp(), "bn0")
>>> [p.rsplit("/", 1)[1] for p in paths]
['bn0.h', 'bn0.c']

Command line (layers saved by FixedPointBN.save)::

    python -m fxbn.codegen c conv1_bn.json conv2_bn.npz --out generated/

Out-of-range inputs: the generated functions first check every input against its channel's in_range (only when some
channel's range is narrower than the input type); on the first violation they return ``<NAME>_OUT_OF_RANGE``, store
the element's flat index in ``*bad_index`` (when not NULL) and leave the output buffer untouched -- they never compute
an output the proof does not cover.  Otherwise they return ``<NAME>_OK``.
"""
import argparse
import os
import re
import sys

import numpy as np

from fxbn.atomic import write_files

__all__ = ["EXPR", "render_expr", "layer_to_c", "c_accumulator_bits", "main"]

# The per-element expression, in SSA steps evaluated at the accumulator type ACC (int32_t or int64_t).  Operands:
# "A", "B" (the channel's multiplier and bias, cast from their array type to ACC), "x" (the input, cast to ACC),
# "S" (the emitted shift min(s, w - 1), an unsigned array element), "QMIN", "QMAX" (ACC constants) or an earlier
# step.  Ops: "mul", "add" (C's * and + on ACC: the lemma requires the exact value to fit ACC, else it would be
# undefined behaviour), "shr" (C's >> on a possibly negative ACC: implementation-defined, arithmetic by the
# generated static assertion), "clamp" (two comparisons), and, for the lemma's wrong variant only, "div" (C's /,
# truncating toward zero).  The last step's value is cast to the output type.
EXPR = (
    ("p", "mul", "A", "x"),
    ("acc", "add", "p", "B"),
    ("q", "shr", "acc", "S"),
    ("y", "clamp", "q", "QMIN", "QMAX"),
)

_C_TYPES = {"int8": "int8_t", "uint8": "uint8_t", "int16": "int16_t", "uint16": "uint16_t", "int32": "int32_t",
            "int64": "int64_t"}


def _bits(v):
    v = int(v)
    return (v if v >= 0 else ~v).bit_length() + 1


def _narrowest(values):
    """The narrowest of int8_t/int16_t/int32_t/int64_t holding every value, and its width."""
    need = max(_bits(v) for v in values)
    for w in (8, 16, 32, 64):
        if need <= w:
            return f"int{w}_t", w
    raise ValueError(f"value needs {need} bits: more than int64_t")


def _lit(v, ctype):
    """A C constant expression of type ctype (after the initializer's conversion) with value v, no overflow."""
    v = int(v)
    if ctype in ("int64_t", "acc64"):
        if v == -(1 << 63):
            return "(-INT64_C(9223372036854775807) - 1)"
        return f"INT64_C({v})"
    if v == -(1 << 31):
        return "(-INT32_C(2147483647) - 1)"
    return f"INT32_C({v})" if ctype in ("int32_t", "acc32") else str(v)


def render_expr(steps, operand):
    """C statements for ``steps`` (see EXPR): ``operand`` maps an operand name ("A", "x", ...) to a C expression of
    type ACC.  Returns (lines, name of the result)."""
    lines = []
    names = {}

    def arg(a):
        return names.get(a) or operand[a]

    for name, op, *args in steps:
        a = [arg(v) for v in args]
        if op == "mul":
            e = f"{a[0]} * {a[1]}"
        elif op == "add":
            e = f"{a[0]} + {a[1]}"
        elif op == "shr":
            e = f"{a[0]} >> {a[1]}"
        elif op == "div":
            e = f"{a[0]} / ((ACC)1 << {a[1]})"
        elif op == "clamp":
            e = f"{a[0]} < {a[1]} ? {a[1]} : ({a[0]} > {a[2]} ? {a[2]} : {a[0]})"
        else:
            raise ValueError(f"unknown template op {op!r}")
        lines.append(f"const ACC {name} = {e};")
        names[name] = name
    return lines, steps[-1][0]


def c_accumulator_bits(layer):
    """32 when every multiplier, A*x, A*x + B and B fits int32 over the channel's in_range (recomputed exactly and
    checked against the solver's accumulator_bits), else 64."""
    bits_a, bits_acc = layer._widths()
    need = max(int(bits_a.max()), int(bits_acc.max()), int(np.max(layer.accumulator_bits)))
    if need > 64:
        raise ValueError(f"the layer needs a {need}-bit accumulator: more than int64_t")
    return 32 if need <= 32 else 64


def _proof_summary(layer, w):
    src = layer.source
    if src["form"] == "affine":
        ref = "v_c(x) = a_c*x + b_c (a_c, b_c: the exact rationals of the source floats)"
    else:
        ref = ("v_c(x) = (gamma_c*(in_scale_c*(x - in_zp_c) - mean_c)/sqrt(var_c + eps_c) + beta_c)/out_scale_c"
               " + out_zp_c, exact real arithmetic")
    lo, hi = layer.in_range[:, 0], layer.in_range[:, 1]
    return [
        "Proof summary (fxbn solver, exact breakpoint method, see DESIGN.md):",
        f"  for every channel c and every integer x in [LO_c, HI_c] (here {int(lo.min())} <= LO_c, HI_c <= "
        f"{int(hi.max())}),",
        f"  clamp(floor((A_c*x + B_c) / 2^s_c), {layer.out_range[0]}, {layer.out_range[1]}) == "
        f"clamp(R(v_c(x)), {layer.out_range[0]}, {layer.out_range[1]}),",
        f"  R = rounding '{layer.rounding}' (its offset is folded into B_c), {ref}.",
        f"  shifts {int(layer.shift.min())}..{int(layer.shift.max())} (minimal per channel"
        f"{', common' if layer.solve_options.get('common_shift') else ''}); multipliers <= "
        f"{int(layer.multiplier_bits.max())} bits; A*x, A*x + B and B <= {int(np.max(layer._widths()[1]))} bits over "
        "the ranges,",
        f"  so the int{w}_t accumulator never overflows (verify.lemmas codegen_expression: this code's expression",
        "  equals the formula above in QF_BV at these widths; S_c = min(s_c, " + str(w - 1) + ") gives the same "
        "floor).",
        "  Inputs outside [LO_c, HI_c] are rejected (no output written): the proof does not cover them.",
    ]


def _array(ctype, name, values):
    body = ", ".join(_lit(v, ctype) for v in values)
    return f"static const {ctype} {name}[{len(values)}] = {{{body}}};"


def layer_to_c(layer, directory, name):
    """Write ``<directory>/<name>.h`` and ``<name>.c`` for a FixedPointBN; returns their paths.

    The header declares ``int <name>_nchw(const In *x, Out *y, size_t n, size_t hw, size_t *bad_index)`` (buffers of
    n*C*hw elements, channels second) and ``int <name>_nhwc(const In *x, Out *y, size_t pixels, size_t *bad_index)``
    (pixels*C elements, channels last).  Both return ``<NAME>_OK`` (0), or ``<NAME>_OUT_OF_RANGE`` (1) with the flat
    index of the first input outside its channel's in_range in ``*bad_index`` and ``y`` untouched.

    Raises
    ------
    ValueError
        ``name`` is not a C identifier; nothing is written then.

    Examples
    --------
    >>> import fxbn, tempfile, os
    >>> d = tempfile.mkdtemp()
    >>> layer = fxbn.from_affine(0.25, -3.0, in_dtype="int8", rounding="floor")
    >>> h, c = layer_to_c(layer, d, "quarter")
    >>> "int quarter_nchw(const int8_t *x, int8_t *y, size_t n, size_t hw, size_t *bad_index);" in open(h).read()
    True
    """
    from fxbn.api import _require_layer

    _require_layer(layer, "layer_to_c")
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise ValueError(f"name must be a C identifier, got {name!r}")
    w = c_accumulator_bits(layer)
    C = layer.channels
    in_t, out_t = _C_TYPES[layer.in_dtype.name], _C_TYPES[layer.out_dtype.name]
    up = name.upper()
    a_t, _ = _narrowest(layer.multiplier.tolist())
    b_t, _ = _narrowest(layer.bias.tolist())
    shifts = np.minimum(layer.shift, w - 1).tolist()
    info = np.iinfo(layer.in_dtype)
    lo, hi = layer.in_range[:, 0].tolist(), layer.in_range[:, 1].tolist()
    checked = any(lo[c] > info.min or hi[c] < info.max for c in range(C))
    acc = f"int{w}_t"
    qmin, qmax = layer.out_range

    header = f"""/* {name}.h: fxbn FixedPointBN layer, generated by fxbn.codegen (C99; do not edit). */
#ifndef FXBN_{up}_H
#define FXBN_{up}_H

#include <stddef.h>
#include <stdint.h>

#define {up}_CHANNELS {C}
#define {up}_QMIN {qmin}
#define {up}_QMAX {qmax}
#define {up}_OK 0
#define {up}_OUT_OF_RANGE 1

/* y = clamp((A_c*x + B_c) >> s_c, {up}_QMIN, {up}_QMAX) per channel c; {in_t} in, {out_t} out,
   rounding {layer.rounding}.
   Return {up}_OK, or {up}_OUT_OF_RANGE with the flat index of the first input outside its channel's
   proven range in *bad_index (if bad_index is not NULL); y is then left untouched. */
int {name}_nchw(const {in_t} *x, {out_t} *y, size_t n, size_t hw, size_t *bad_index);  /* n*C*hw elements */
int {name}_nhwc(const {in_t} *x, {out_t} *y, size_t pixels, size_t *bad_index);       /* pixels*C elements */

#endif
"""
    lines, result = render_expr(EXPR, {"A": f"(ACC){name}_A[c]", "B": f"(ACC){name}_B[c]", "x": "(ACC)v",
                                       "S": f"{name}_S[c]", "QMIN": f"(ACC){_lit(qmin, 'acc%d' % w)}",
                                       "QMAX": f"(ACC){_lit(qmax, 'acc%d' % w)}"})
    body = "\n".join("    " + ln for ln in lines)
    summary = "\n".join(" * " + ln for ln in _proof_summary(layer, w))
    parts = [f"""/* {name}.c: fxbn FixedPointBN layer, generated by fxbn.codegen (C99; do not edit).
 *
{summary}
 */
#include "{name}.h"

/* What the code relies on, checked at compile time (C99: a negative array size is a constraint violation):
   >> of a negative value is arithmetic (implementation-defined in C99), the integers are two's complement. */
typedef char {name}_assert_arithmetic_shift[((int32_t)-5 >> 1) == -3 && ((int64_t)-5 >> 1) == -3 ? 1 : -1];
typedef char {name}_assert_twos_complement[((int32_t)-1 & 3) == 3 && INT64_MIN == -INT64_MAX - 1 ? 1 : -1];

#define ACC {acc}
""",
             _array(a_t, f"{name}_A", layer.multiplier.tolist()),
             _array(b_t, f"{name}_B", layer.bias.tolist()),
             _array("uint8_t", f"{name}_S", shifts)]
    if checked:
        parts += [_array(in_t, f"{name}_LO", lo), _array(in_t, f"{name}_HI", hi)]
    parts.append(f"""
static {out_t} {name}_one(size_t c, {in_t} v)
{{
{body}
    return ({out_t}){result};
}}
""")
    if checked:
        parts.append(f"""static int {name}_bad(size_t c, {in_t} v)
{{
    return v < {name}_LO[c] || v > {name}_HI[c];
}}
""")
        nchw_check = f"""    for (i = 0, k = 0; i < n; ++i)
        for (c = 0; c < {C}; ++c)
            for (j = 0; j < hw; ++j, ++k)
                if ({name}_bad(c, x[k])) {{
                    if (bad_index) *bad_index = k;
                    return {up}_OUT_OF_RANGE;
                }}
"""
        nhwc_check = f"""    for (i = 0, k = 0; i < pixels; ++i)
        for (c = 0; c < {C}; ++c, ++k)
            if ({name}_bad(c, x[k])) {{
                if (bad_index) *bad_index = k;
                return {up}_OUT_OF_RANGE;
            }}
"""
    else:
        nchw_check = nhwc_check = "    (void)bad_index;  /* every channel's range covers the input type */\n"
    parts.append(f"""int {name}_nchw(const {in_t} *x, {out_t} *y, size_t n, size_t hw, size_t *bad_index)
{{
    size_t i, c, j, k;
{nchw_check}    for (i = 0, k = 0; i < n; ++i)
        for (c = 0; c < {C}; ++c)
            for (j = 0; j < hw; ++j, ++k)
                y[k] = {name}_one(c, x[k]);
    return {up}_OK;
}}

int {name}_nhwc(const {in_t} *x, {out_t} *y, size_t pixels, size_t *bad_index)
{{
    size_t i, c, k;
{nhwc_check}    for (i = 0, k = 0; i < pixels; ++i)
        for (c = 0; c < {C}; ++c, ++k)
            y[k] = {name}_one(c, x[k]);
    return {up}_OK;
}}
""")
    source = "\n".join(parts)
    os.makedirs(directory, exist_ok=True)
    paths = [os.path.join(directory, f"{name}.h"), os.path.join(directory, f"{name}.c")]
    write_files(dict(zip(paths, (header, source))))       # both new or both old, never a mixed pair
    return paths


def _c_name(path):
    stem = os.path.splitext(os.path.basename(path))[0]
    name = re.sub(r"[^A-Za-z0-9_]", "_", stem)
    return name if re.match(r"[A-Za-z_]", name) else "l_" + name


def main(argv=None):
    """``python -m fxbn.codegen c LAYERS... --out DIR``: one .h/.c pair per layer file, named after the file."""
    import fxbn

    p = argparse.ArgumentParser(prog="python -m fxbn.codegen", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="target", required=True)
    c = sub.add_parser("c", help="C99 header + source per layer")
    c.add_argument("layers", nargs="+", help="layer files written by FixedPointBN.save (.json or .npz)")
    c.add_argument("--out", required=True, help="output directory")
    args = p.parse_args(argv)
    names = [_c_name(path) for path in args.layers]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        p.error(f"layer files map to the same C name: {', '.join(sorted(dup))}")
    layers = [fxbn.load(path) for path in args.layers]       # all loaded before anything is written
    for layer, name in zip(layers, names):
        for path in layer_to_c(layer, args.out, name):
            print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
