"""A FixedPointBN layer as a .tflite model of plain integer ops, run by LiteRT (ai-edge-litert).

The model takes a [K, C] tensor of the layer's input type (channels last) and computes, at the accumulator type
Acc = int32 where the layer's A*x + B fits (``fxbn.codegen.c_accumulator_bits``) and int64 otherwise:

    int32: CAST(In -> int32), MUL by A_c, ADD B_c, RIGHT_SHIFT by min(s_c, 31), MAXIMUM qmin, MINIMUM qmax, CAST
    int64: CAST(In -> int64), MUL, ADD, then (LiteRT 2.3's RIGHT_SHIFT, FLOOR_DIV and DIV reject int64) FLOOR_MOD by
           2^s_c, SUB, MAXIMUM/MINIMUM with qmin*2^s_c / qmax*2^s_c, CAST to float32, MUL by 2^-s_c, CAST to Out --
           every step exact (see the comment in layer_to_tflite)

(the constants are [C] tensors broadcast along the rows; no quantization parameters, no rounding left to the
runtime).  The flatbuffer is written with the ``tflite`` schema package's generated builders.  Inputs outside the
layer's in_range are not checked by the model: callers feed only inputs inside it.
"""
import numpy as np

__all__ = ["layer_to_tflite", "run_litert"]

_TYPES = {"int8": "INT8", "uint8": "UINT8", "int16": "INT16", "uint16": "UINT16", "int32": "INT32", "int64": "INT64",
          "float32": "FLOAT32"}


def layer_to_tflite(layer, rows):
    """The .tflite model (bytes) of the layer for a [rows, C] input."""
    import flatbuffers
    import tflite

    from fxbn.api import _positive_rows, _require_layer
    from fxbn.codegen import c_accumulator_bits

    _require_layer(layer, "layer_to_tflite")
    rows = _positive_rows(rows)

    w = c_accumulator_bits(layer)
    acc = np.dtype(f"int{w}")
    C = layer.channels
    b = flatbuffers.Builder(1024)
    ttype = lambda name: getattr(tflite.TensorType, _TYPES[name])  # noqa: E731
    buffers = [None]                                          # buffer 0: empty, by convention
    tensors = []

    def tensor(name, shape, dtype, data=None):
        if data is not None:
            buffers.append(np.ascontiguousarray(data, dtype).tobytes())
        tensors.append((name, shape, ttype(np.dtype(dtype).name), len(buffers) - 1 if data is not None else 0))
        return len(tensors) - 1

    x = tensor("x", [rows, C], layer.in_dtype)
    xa = tensor("x_acc", [rows, C], acc)
    A = tensor("A", [C], acc, layer.multiplier)
    B = tensor("B", [C], acc, layer.bias)
    y = tensor("y", [rows, C], layer.out_dtype)
    op = tflite.BuiltinOperator
    if w == 32:
        S = tensor("S", [C], acc, np.minimum(layer.shift, 31))
        lo = tensor("qmin", [1], acc, [layer.out_range[0]])
        hi = tensor("qmax", [1], acc, [layer.out_range[1]])
        t = [tensor(f"t{i}", [rows, C], acc) for i in range(5)]
        ops = [(op.MUL, [xa, A], [t[0]]), (op.ADD, [t[0], B], [t[1]]), (op.RIGHT_SHIFT, [t[1], S], [t[2]]),
               (op.MAXIMUM, [t[2], lo], [t[3]]), (op.MINIMUM, [t[3], hi], [t[4]]), (op.CAST, [t[4]], [y])]
    else:
        # LiteRT 2.3 has no int64 RIGHT_SHIFT / FLOOR_DIV / DIV kernel.  Exact detour: r = FLOOR_MOD(v, 2^s) makes
        # v - r = floor(v / 2^s) * 2^s; clamping that to [qmin*2^s, qmax*2^s] (bounds saturated to the nearest
        # multiple of 2^s inside int64) leaves q*2^s with q in [qmin, qmax] (16-bit) or a power of two: exactly
        # representable in float32, so CAST to float32, MUL by 2^-s (a power of two, no rounding) and CAST to Out
        # are exact.
        pw = [1 << int(v) for v in layer.shift]
        top = (1 << 63) - 1
        L = [max(layer.out_range[0] * p, -(1 << 63)) for p in pw]
        H = [min(layer.out_range[1] * p, top - top % p) for p in pw]
        P = tensor("pow2_s", [C], acc, pw)
        lo = tensor("qmin_scaled", [C], acc, L)
        hi = tensor("qmax_scaled", [C], acc, H)
        inv = tensor("pow2_minus_s", [C], np.float32, [np.ldexp(np.float32(1), -int(v)) for v in layer.shift])
        t = [tensor(f"t{i}", [rows, C], acc) for i in range(6)]
        f = [tensor(f"f{i}", [rows, C], np.float32) for i in range(2)]
        ops = [(op.MUL, [xa, A], [t[0]]), (op.ADD, [t[0], B], [t[1]]), (op.FLOOR_MOD, [t[1], P], [t[2]]),
               (op.SUB, [t[1], t[2]], [t[3]]), (op.MAXIMUM, [t[3], lo], [t[4]]), (op.MINIMUM, [t[4], hi], [t[5]]),
               (op.CAST, [t[5]], [f[0]]), (op.MUL, [f[0], inv], [f[1]]), (op.CAST, [f[1]], [y])]
    ops.insert(0, (op.CAST, [x], [xa]))
    codes = sorted({code for code, _, _ in ops})

    def ivec(start, values):
        start(b, len(values))
        for v in reversed(values):
            b.PrependInt32(v)
        return b.EndVector()

    # buffers
    buf_offsets = []
    for data in buffers:
        vec = b.CreateByteVector(data) if data else None
        tflite.BufferStart(b)
        if vec is not None:
            tflite.BufferAddData(b, vec)
        buf_offsets.append(tflite.BufferEnd(b))
    # tensors
    ten_offsets = []
    for name, shape, tt, buf in tensors:
        n = b.CreateString(name)
        sh = ivec(tflite.TensorStartShapeVector, shape)
        tflite.TensorStart(b)
        tflite.TensorAddShape(b, sh)
        tflite.TensorAddType(b, tt)
        tflite.TensorAddBuffer(b, buf)
        tflite.TensorAddName(b, n)
        ten_offsets.append(tflite.TensorEnd(b))
    # operators
    op_offsets = []
    for code, ins, outs in ops:
        iv = ivec(tflite.OperatorStartInputsVector, ins)
        ov = ivec(tflite.OperatorStartOutputsVector, outs)
        tflite.OperatorStart(b)
        tflite.OperatorAddOpcodeIndex(b, codes.index(code))
        tflite.OperatorAddInputs(b, iv)
        tflite.OperatorAddOutputs(b, ov)
        op_offsets.append(tflite.OperatorEnd(b))

    def ovec(start, offsets):
        start(b, len(offsets))
        for o in reversed(offsets):
            b.PrependUOffsetTRelative(o)
        return b.EndVector()

    tv = ovec(tflite.SubGraphStartTensorsVector, ten_offsets)
    iv = ivec(tflite.SubGraphStartInputsVector, [x])
    outv = ivec(tflite.SubGraphStartOutputsVector, [y])
    opv = ovec(tflite.SubGraphStartOperatorsVector, op_offsets)
    name = b.CreateString("fxbn_layer")
    tflite.SubGraphStart(b)
    tflite.SubGraphAddTensors(b, tv)
    tflite.SubGraphAddInputs(b, iv)
    tflite.SubGraphAddOutputs(b, outv)
    tflite.SubGraphAddOperators(b, opv)
    tflite.SubGraphAddName(b, name)
    sg = tflite.SubGraphEnd(b)
    code_offsets = []
    for code in codes:
        tflite.OperatorCodeStart(b)
        tflite.OperatorCodeAddDeprecatedBuiltinCode(b, min(code, 127))
        tflite.OperatorCodeAddBuiltinCode(b, code)
        tflite.OperatorCodeAddVersion(b, 1)
        code_offsets.append(tflite.OperatorCodeEnd(b))
    cv = ovec(tflite.ModelStartOperatorCodesVector, code_offsets)
    sgv = ovec(tflite.ModelStartSubgraphsVector, [sg])
    bv = ovec(tflite.ModelStartBuffersVector, buf_offsets)
    desc = b.CreateString("fxbn FixedPointBN layer")
    tflite.ModelStart(b)
    tflite.ModelAddVersion(b, 3)
    tflite.ModelAddOperatorCodes(b, cv)
    tflite.ModelAddSubgraphs(b, sgv)
    tflite.ModelAddBuffers(b, bv)
    tflite.ModelAddDescription(b, desc)
    b.Finish(tflite.ModelEnd(b), file_identifier=b"TFL3")
    return bytes(b.Output())


def run_litert(model, x):
    """Run a model from layer_to_tflite on x ([rows, C]) in ai-edge-litert's Interpreter; returns the output."""
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_content=model, num_threads=1)
    it.allocate_tensors()
    it.set_tensor(it.get_input_details()[0]["index"], x)
    it.invoke()
    return it.get_tensor(it.get_output_details()[0]["index"]).copy()
