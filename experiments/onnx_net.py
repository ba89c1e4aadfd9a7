"""The integer network of fxbn.network (a quantized ``Graph``) as an integer-only ONNX model.

Calibrates the shared data's CIFAR ResNet, exports it with :func:`fxbn.onnx.network.export_network` and compares
onnxruntime's integer logits with the library's integer network on the CIFAR-10 test images.

    python -m experiments.onnx_net [--net resnet20] [--limit-per-class N] [--out resnet20.int.onnx]
"""
import argparse
import json
import sys
import time

import numpy as np

import fxbn.onnx as fo
from fxbn.onnx.network import export_network as export_graph  # noqa: F401  (the experiments' name)


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


def compare(graph, model, pixels, batch=100, threads=2):
    """Integer logits of the ONNX model in onnxruntime (optimizations all on, then all off) against the experiments'
    fxbn integer network (Graph.forward_int, FixedPointBN.apply): {level: (images with any differing logit,
    onnx logits)} and the network's integer logits."""
    theirs = np.concatenate([graph.forward_int(pixels[i:i + batch], bn="fxbn")[0]
                             for i in range(0, len(pixels), batch)])
    out = {}
    for opt in (True, False):
        sess = fo.session(model, optimize=opt, threads=threads)
        ours = np.concatenate([sess.run(None, {"pixels": np.ascontiguousarray(pixels[i:i + batch])})[0]
                               for i in range(0, len(pixels), batch)])
        out["ORT_ENABLE_ALL" if opt else "ORT_DISABLE_ALL"] = (int(np.sum(np.any(ours != theirs, axis=1))), ours)
    return out, theirs


def main(argv=None):
    import pathlib

    from experiments import data

    p = argparse.ArgumentParser(prog="python -m experiments.onnx_net", description=__doc__.splitlines()[0])
    p.add_argument("--net", default="resnet20", choices=["resnet20", "resnet56"])
    p.add_argument("--limit-per-class", type=int, default=None, help="CIFAR-10 test images per class (default all)")
    p.add_argument("--out", default=None, help="write the ONNX model here")
    args = p.parse_args(argv)
    root = pathlib.Path(data.data_dir())
    t0 = time.time()
    graph, pixels, labels = cifar_network(root, args.net, args.limit_per_class)
    model = export_graph(graph, 32, args.out)
    t1 = time.time()
    res, theirs = compare(graph, model, pixels)
    unit = np.array(json.loads({p.key: p.value for p in model.metadata_props}["fxbn.logit_unit"]))
    top1 = lambda logits: np.mean((logits * unit).argmax(1) == labels) * 100  # noqa: E731
    print(f"{args.net}: {len(model.graph.node)} nodes, opset {fo.OPSET}; {len(pixels)} CIFAR-10 test images; "
          f"fxbn integer network top-1 {top1(theirs):.2f}%")
    for level, (bad, ours) in res.items():
        print(f"  onnxruntime {level:16s} images with a logit differing from the fxbn integer network: {bad}; "
              f"top-1 {top1(ours):.2f}%")
    print(f"calibrate + export {t1 - t0:.1f} s, compare {time.time() - t1:.1f} s")
    return 0 if all(bad == 0 for bad, _ in res.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
