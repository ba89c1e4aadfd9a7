"""ONNX in, integer-only ONNX out, on a model fxbn did not write: the akamaster ResNet exported by torch.onnx.export.

For each export (BN nodes kept; BN folded into the conv weights by the exporter) the float ONNX model is imported
with fxbn.onnx.importer.import_onnx and compared with the experiments' graph (experiments.nets.cifar_resnet, built
from the same weights): float logits, then -- calibrated as experiments.onnx_net (min/max, first 50 test images per
class) -- the integer logits of both graphs on every test image; then the imported graph is exported with
fxbn.onnx.network.export_network and run in onnxruntime (optimizations on and off) against the library's integer
network on all images.

    python -m experiments.onnx_import [--net resnet20] [--limit-per-class N] [--keep DIR]
"""
import argparse
import pathlib
import sys
import tempfile
import time

import numpy as np


def run(net="resnet20", limit_per_class=None, keep=None, out=print):
    import fxbn.onnx as fo
    from experiments import data, nets, onnx_net, torch_resnet
    from fxbn.onnx.importer import import_onnx
    from fxbn.onnx.network import export_network

    root = pathlib.Path(data.data_dir())
    npz = root / "cifar10" / f"{net}.npz"
    t0 = time.time()
    ref, pixels, labels = onnx_net.cifar_network(root, net, limit_per_class)
    calib = pixels[np.concatenate([np.flatnonzero(labels == c)[:50] for c in range(10)])]
    batches = [calib[i:i + 100] for i in range(0, len(calib), 100)]
    runs = [ref.forward_int(pixels[i:i + 100]) for i in range(0, len(pixels), 100)]
    ref_int, ref_real = np.concatenate([r[0] for r in runs]), np.concatenate([r[1] for r in runs])
    ok = True
    work = pathlib.Path(keep) if keep else pathlib.Path(tempfile.mkdtemp())
    work.mkdir(parents=True, exist_ok=True)
    out(f"{net}: {len(pixels)} CIFAR-10 test images; experiments graph built and calibrated in {time.time() - t0:.1f} s")
    for fold in (False, True):
        label = "BN folded by the exporter" if fold else "BN nodes kept"
        path = torch_resnet.export_onnx(npz, work / f"{net}{'.folded' if fold else ''}.onnx", fold_bn=fold)
        graph = import_onnx(path, nets.CIFAR_MEAN, nets.CIFAR_STD)
        sess = fo.session(str(path), optimize=False)
        fl, fr, fo_ = [], [], []
        for i in range(0, min(len(pixels), 1000), 100):
            px = pixels[i:i + 100]
            fl.append(graph.forward_float(px))
            fr.append(ref.forward_float(px))
            fo_.append(sess.run(None, {"input": np.ascontiguousarray(graph.normalise(px).transpose(0, 3, 1, 2))})[0])
        fl, fr, fo_ = np.concatenate(fl), np.concatenate(fr), np.concatenate(fo_)
        out(f"  [{label}] {len(graph.nodes)} graph nodes; float logits on {len(fl)} images: max |imported - "
            f"experiments graph| {np.abs(fl - fr).max():.3g} (bit-identical: {np.array_equal(fl, fr)}), max |imported"
            f" - onnxruntime float| {np.abs(fl - fo_).max():.3g}")
        graph.calibrate(batches)
        graph.quantize()
        runs = [graph.forward_int(pixels[i:i + 100]) for i in range(0, len(pixels), 100)]
        ours, real = np.concatenate([r[0] for r in runs]), np.concatenate([r[1] for r in runs])
        same = int(np.sum(np.all(ours == ref_int, axis=1)))
        out(f"  [{label}] integer logits identical to the experiments graph's on {same}/{len(pixels)} images; "
            f"top-1 (real logits = integer x per-class unit) imported {np.mean(real.argmax(1) == labels) * 100:.2f}%, "
            f"experiments {np.mean(ref_real.argmax(1) == labels) * 100:.2f}%")
        if not fold:
            ok = ok and same == len(pixels) and np.array_equal(fl, fr)
        model = export_network(graph, 32, work / f"{net}{'.folded' if fold else ''}.int.onnx")
        res, theirs = onnx_net.compare(graph, model, pixels)
        assert np.array_equal(theirs, ours)
        for level, (bad, _) in res.items():
            out(f"  [{label}] onnxruntime {level:16s} images with a logit differing from fxbn's integer network: "
                f"{bad}/{len(pixels)}")
            ok = ok and bad == 0
    out(f"total {time.time() - t0:.1f} s")
    return ok


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m experiments.onnx_import", description=__doc__.splitlines()[0])
    p.add_argument("--net", default="resnet20", choices=["resnet20", "resnet56"])
    p.add_argument("--limit-per-class", type=int, default=None)
    p.add_argument("--keep", default=None, help="directory for the exported ONNX files (default: a temporary one)")
    args = p.parse_args(argv)
    return 0 if run(args.net, args.limit_per_class, args.keep) else 1


if __name__ == "__main__":
    sys.exit(main())
