"""The integer network of fxbn.network (a quantized ``Graph``) as an integer-only ONNX model, and ONNX Runtime's own
quantizer (quantize_static, QDQ) on the same float network as a peer.

Calibrates one of the shared data's networks, exports it with :func:`fxbn.onnx.network.export_network` and compares
onnxruntime's integer outputs (graph optimizations all on, then all off) with the library's integer network
(``Graph.forward_int(bn="fxbn")``) on the CIFAR-10 test images (ResNet-20/56) or the 1,000 ImageNet sample images
(ResNet-50, MobileNet v1 0.25, Darknet-tiny).  With ``--qdq`` (default for the ImageNet nets) the graph's float
network (``export_float``) also goes through ``onnxruntime.quantization.quantize_static`` (QDQ, per-channel int8
weights, uint8 activations, MinMax calibration on the same calibration images as fxbn) and its outputs are compared
with the exact integer network.

    python -m experiments.onnx_net [--net resnet20] [--limit-per-class N] [--out resnet20.int.onnx]
    python -m experiments.onnx_net --net resnet50 [--limit N] [--calib 200]

``--torch-conv`` (default for the ImageNet nets: the library's NumPy per-tap convolution needs ~10 s per ResNet-50
image on this machine) computes fxbn.network's convolutions with torch.nn.functional.conv2d instead.  Their integer
results are unchanged: the operands are integer-valued and fxbn.network.conv_int already picks float32/float64 by the
proven term bound (< 2^24 / < 2^53), so every summation order gives the exact integer; the script checks this on its
first images (``--check-conv`` images, forward_int with and without the patch must agree exactly).
"""
import argparse
import json
import sys
import time

import numpy as np

import fxbn.onnx as fo
from fxbn.onnx.network import export_float, export_network, logit_unit
from fxbn.onnx.network import export_network as export_graph  # noqa: F401  (the experiments' name)

IMAGENET = ("resnet50", "mobilenet", "darknet_tiny")


def cifar_network(data_root, net="resnet20", limit_per_class=None, calib_per_class=50, rounding="half_up"):
    """(graph, pixels, labels): the experiments' CIFAR ResNet integer network, calibrated as experiments.run does
    (min/max on the first calib_per_class test images of each class, rounding half_up), and the test images."""
    from experiments import data, nets

    graph = nets.cifar_resnet(data_root / "cifar10" / f"{net}.npz")
    pixels, labels = data.cifar_test(data_root, limit_per_class=limit_per_class)
    calib = pixels[np.concatenate([np.flatnonzero(labels == c)[:calib_per_class] for c in range(10)])]
    graph.calibrate([calib[i:i + 100] for i in range(0, len(calib), 100)])
    graph.quantize(rounding=rounding)
    return graph, pixels, labels


def imagenet_network(data_root, net, limit=None, calib=200, batch=20, rounding="half_up"):
    """(graph, pixels, labels, calib_pixels): as experiments.run calibrates the ImageNet nets (min/max on the first
    ``calib`` sample images, rounding half_up); ResNet-50/MobileNet: shorter side 256, centre crop 224; Darknet-tiny:
    224 x 224 (labels in Darknet's output order)."""
    from experiments import data, nets

    graph = {"resnet50": nets.resnet50, "mobilenet": nets.mobilenet_v1, "darknet_tiny": nets.darknet_tiny}[net](
        data_root)
    crop = None if net == "darknet_tiny" else 224
    pixels, labels, _ = data.imagenet_images(data_root, size=224 if crop is None else 256, crop=crop, limit=limit)
    if net == "darknet_tiny":
        wnids = (data_root / "imagenet" / "darknet_tiny.output_wnids.txt").read_text().split()
        order = {w: i for i, w in enumerate(sorted(wnids))}
        to_label = np.array([order[w] for w in wnids])
        labels = np.array([int(np.flatnonzero(to_label == lab)[0]) for lab in labels])   # in output order
    cal = pixels[:calib]
    graph.calibrate([cal[i:i + batch] for i in range(0, len(cal), batch)])
    graph.quantize(rounding=rounding)
    return graph, pixels, labels, cal


def torch_conv_nhwc(x, w, stride, pad, depthwise=False, dtype=np.float32):
    """fxbn.network.conv_nhwc computed by torch.nn.functional.conv2d in the same dtype (x NHWC, w HWIO or (kh, kw, C)
    depthwise).  On integer-valued operands whose term bound is below 2^24 (float32) / 2^53 (float64) -- the only way
    fxbn.network.conv_int calls it -- the result is the exact integer convolution, like the NumPy one."""
    import torch

    from fxbn.network import pad_nhwc

    x = pad_nhwc(np.asarray(x, dtype), pad)
    t = torch.from_numpy(np.ascontiguousarray(x)).permute(0, 3, 1, 2)
    w = np.asarray(w, dtype)
    if depthwise:
        wt, groups = torch.from_numpy(np.ascontiguousarray(np.transpose(w, (2, 0, 1))[:, None])), w.shape[2]
    else:
        wt, groups = torch.from_numpy(np.ascontiguousarray(np.transpose(w, (3, 2, 0, 1)))), 1
    with torch.no_grad():
        y = torch.nn.functional.conv2d(t, wt, stride=stride, groups=groups)
    return np.ascontiguousarray(y.permute(0, 2, 3, 1).numpy())


def use_torch_conv(enable=True):
    """Swap fxbn.network's convolution for ``torch_conv_nhwc`` (or back); returns the previous function."""
    import fxbn.network as fn

    previous = fn.conv_nhwc
    if enable and not hasattr(fn, "_numpy_conv_nhwc"):
        fn._numpy_conv_nhwc = fn.conv_nhwc
    fn.conv_nhwc = torch_conv_nhwc if enable else getattr(fn, "_numpy_conv_nhwc", fn.conv_nhwc)
    return previous


def integer_outputs(graph, pixels, batch=20):
    """Graph.forward_int(bn="fxbn")'s exact int64 outputs, batch by batch."""
    return np.concatenate([graph.forward_int(pixels[i:i + batch], bn="fxbn")[0] for i in range(0, len(pixels), batch)])


def run_onnx(model, feed_name, inputs, optimize, batch=20, threads=2):
    sess = fo.session(model, optimize=optimize, threads=threads)
    return np.concatenate([sess.run(None, {feed_name: np.ascontiguousarray(inputs[i:i + batch])})[0]
                           for i in range(0, len(inputs), batch)])


def compare(graph, model, pixels, batch=100, threads=2, theirs=None):
    """Integer outputs of the ONNX model in onnxruntime (optimizations all on, then all off) against the library's
    integer network (Graph.forward_int, FixedPointBN.apply): {level: (images with any differing output, onnx
    outputs)} and the network's integer outputs."""
    if theirs is None:
        theirs = integer_outputs(graph, pixels, batch)
    out = {}
    for opt in (True, False):
        ours = run_onnx(model, "pixels", pixels, opt, batch, threads)
        differs = np.any((ours != theirs).reshape(len(pixels), -1), axis=1) if ours.shape == theirs.shape \
            else np.ones(len(pixels), bool)
        out["ORT_ENABLE_ALL" if opt else "ORT_DISABLE_ALL"] = (int(differs.sum()), ours)
    return out, theirs


def float_inputs(graph, pixels):
    """The float model's input: the normalised images, NCHW float32."""
    return np.ascontiguousarray(graph.normalise(pixels).transpose(0, 3, 1, 2))


def qdq_model(float_model, graph, calib_pixels, path, batch=20):
    """onnxruntime.quantization.quantize_static of the float model: QDQ, per-channel int8 weights, uint8
    activations (U8S8, ORT's recommended x86 format), MinMax calibration on ``calib_pixels`` (fxbn's calibration
    images).  Returns the loaded QDQ ModelProto."""
    import os
    import tempfile

    import onnx
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.batches = iter([float_inputs(graph, calib_pixels[i:i + batch])
                                 for i in range(0, len(calib_pixels), batch)])

        def get_next(self):
            x = next(self.batches, None)
            return None if x is None else {"image": x}

    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "float.onnx")
        onnx.save(float_model, src)
        quantize_static(src, str(path), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod.MinMax)
    return onnx.load(str(path))


def qdq_compare(qdq, graph, pixels, exact_int, unit, batch=20, threads=2):
    """The QDQ model's float outputs against the exact integer network.

    Per optimization level: ``top1_differs`` (classifiers: images whose argmax differs from the exact network's),
    ``grid_differs`` (images with any output that, rounded onto the exact network's integer grid (output / unit), is
    not the exact integer), ``grid_elements`` (such outputs, of ``elements``), and between the levels
    ``on_vs_off_differs`` (images whose QDQ outputs are not bitwise identical with optimizations on and off) and
    ``on_vs_off_top1`` (images whose QDQ argmax changes)."""
    x = float_inputs(graph, pixels)
    res, outs = {}, {}
    classifier = exact_int.ndim == 2
    for opt in (True, False):
        y = run_onnx(qdq, "image", x, opt, batch, threads)
        outs[opt] = y
        grid = np.round(y.astype(np.float64) / unit)
        bad = (grid != exact_int).reshape(len(pixels), -1)
        res["ORT_ENABLE_ALL" if opt else "ORT_DISABLE_ALL"] = {
            "top1_differs": int(np.sum(y.argmax(1) != (exact_int * unit).argmax(1))) if classifier else None,
            "grid_differs": int(bad.any(axis=1).sum()), "grid_elements": int(bad.sum()), "elements": int(bad.size),
            "mean_abs_real": float(np.abs(y - exact_int * unit).mean()),
            "grid_mean_abs_steps": float(np.abs(grid - exact_int).mean()),
            "grid_max_abs_steps": float(np.abs(grid - exact_int).max())}
    res["on_vs_off_differs"] = int(np.any((outs[True] != outs[False]).reshape(len(pixels), -1), axis=1).sum())
    res["on_vs_off_max_abs"] = float(np.abs(outs[True] - outs[False]).max())
    res["on_vs_off_top1"] = int(np.sum(outs[True].argmax(1) != outs[False].argmax(1))) if classifier else None
    return res, outs


def main(argv=None):
    import pathlib

    from experiments import data

    p = argparse.ArgumentParser(prog="python -m experiments.onnx_net", description=__doc__.splitlines()[0])
    p.add_argument("--net", default="resnet20", choices=["resnet20", "resnet56", *IMAGENET])
    p.add_argument("--limit-per-class", type=int, default=None, help="CIFAR-10 test images per class (default all)")
    p.add_argument("--limit", type=int, default=None, help="ImageNet sample images (default all 1,000)")
    p.add_argument("--calib", type=int, default=200, help="ImageNet calibration images (the first N)")
    p.add_argument("--qdq", action=argparse.BooleanOptionalAction, default=None,
                   help="also quantize_static (default: on for the ImageNet nets)")
    p.add_argument("--torch-conv", action=argparse.BooleanOptionalAction, default=None,
                   help="fxbn.network convolutions by torch (exact; default: on for the ImageNet nets)")
    p.add_argument("--check-conv", type=int, default=4, help="images on which --torch-conv is checked")
    p.add_argument("--conv", default="matmul", choices=["matmul", "convinteger"],
                   help="export_network's convolution form (default matmul: NHWC per-tap MatMulInteger)")
    p.add_argument("--batch", type=int, default=20)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default=None, help="write the integer ONNX model here")
    p.add_argument("--qdq-out", default=None, help="write the QDQ model here")
    p.add_argument("--json", default=None, help="write the results here")
    args = p.parse_args(argv)
    imagenet = args.net in IMAGENET
    qdq = imagenet if args.qdq is None else args.qdq
    torch_conv = imagenet if args.torch_conv is None else args.torch_conv
    root = pathlib.Path(data.data_dir())
    t0 = time.time()
    if torch_conv:
        use_torch_conv(True)
    if imagenet:
        graph, pixels, labels, calib = imagenet_network(root, args.net, args.limit, args.calib, args.batch)
        desc = f"{len(pixels)} ImageNet sample images (calibration: the first {len(calib)})"
    else:
        graph, pixels, labels = cifar_network(root, args.net, args.limit_per_class)
        calib = pixels[np.concatenate([np.flatnonzero(labels == c)[:50] for c in range(10)])]
        desc = f"{len(pixels)} CIFAR-10 test images"
    model = export_network(graph, pixels.shape[1], args.out, conv=args.conv)
    unit = logit_unit(model)
    t1 = time.time()
    result = {"net": args.net, "conv": args.conv, "images": desc, "opset": fo.OPSET, "nodes": len(model.graph.node),
              "ops": sorted({n.op_type for n in model.graph.node}), "torch_conv": bool(torch_conv)}
    if torch_conv and args.check_conv:
        k = min(args.check_conv, len(pixels))
        patched = integer_outputs(graph, pixels[:k], args.batch)
        use_torch_conv(False)
        plain = integer_outputs(graph, pixels[:k], args.batch)
        use_torch_conv(True)
        result["torch_conv_check"] = {"images": k, "identical": bool(np.array_equal(patched, plain))}
        print(f"torch convolution check on {k} images: forward_int identical with and without: "
              f"{result['torch_conv_check']['identical']}")
        if not result["torch_conv_check"]["identical"]:
            return 2
    res, theirs = compare(graph, model, pixels, batch=args.batch, threads=args.threads)
    classifier = theirs.ndim == 2

    def top1(logits):
        return float(np.mean((logits * unit).argmax(1) == labels) * 100) if classifier else None

    print(f"{args.net} (conv={args.conv}): {len(model.graph.node)} nodes, opset {fo.OPSET}; {desc}; fxbn integer network"
          + (f" top-1 {top1(theirs):.2f}%" if classifier else f" outputs {theirs.shape[1:]}"))
    for level, (bad, ours) in res.items():
        result[level] = {"differs": bad, "top1": top1(ours)}
        print(f"  exact ONNX, onnxruntime {level:16s} images with an output differing from the fxbn integer network: "
              f"{bad} of {len(pixels)}")
    result["fxbn_top1"] = top1(theirs)
    t2 = time.time()
    if qdq:
        fm = export_float(graph, pixels.shape[1])
        k = min(8, len(pixels))
        ref = graph.forward_float(pixels[:k])
        got = run_onnx(fm, "image", float_inputs(graph, pixels[:k]), True)
        result["float_model_max_abs_diff"] = float(np.abs(got - ref).max())
        result["float_model_max_abs"] = float(np.abs(ref).max())
        print(f"  float ONNX model vs Graph.forward_float on {k} images: max |diff| {np.abs(got - ref).max():.3g} "
              f"(outputs up to {np.abs(ref).max():.3g})")
        import tempfile

        qpath = args.qdq_out or tempfile.mkstemp(suffix=".qdq.onnx")[1]
        qm = qdq_model(fm, graph, calib, qpath, args.batch)
        qres, _ = qdq_compare(qm, graph, pixels, theirs, unit if unit.size > 1 else unit[0], args.batch,
                              args.threads)
        result["qdq"] = qres
        for level in ("ORT_ENABLE_ALL", "ORT_DISABLE_ALL"):
            r = qres[level]
            if classifier:          # the exact logits are not requantized: their integer grid is far finer
                print(f"  QDQ (quantize_static) {level:16s} images whose top-1 differs from the exact network: "
                      f"{r['top1_differs']} of {len(pixels)}; mean |logit diff| {r['mean_abs_real']:.3g}")
            else:
                print(f"  QDQ (quantize_static) {level:16s} images with an output off the exact value (QDQ output "
                      f"rounded onto the exact network's integer grid): {r['grid_differs']} of {len(pixels)} "
                      f"({r['grid_elements']} of {r['elements']} outputs; mean |diff| "
                      f"{r['grid_mean_abs_steps']:.3g} steps, max {r['grid_max_abs_steps']:.0f})")
        print(f"  QDQ optimizations on vs off: images with any output changed: {qres['on_vs_off_differs']} "
              f"(max |diff| {qres['on_vs_off_max_abs']:.3g}); top-1 changed: {qres['on_vs_off_top1']}")
    result["wall_seconds"] = {"calibrate_export": t1 - t0, "compare": t2 - t1, "qdq": time.time() - t2}
    print(f"calibrate + export {t1 - t0:.1f} s, compare {t2 - t1:.1f} s, qdq {time.time() - t2:.1f} s")
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(result, indent=1))
    return 0 if all(bad == 0 for bad, _ in res.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
