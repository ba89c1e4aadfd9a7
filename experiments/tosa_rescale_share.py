"""Share of the shared networks' Conv -> BN layers that a single TOSA RESCALE expresses exactly (and that the
multi-word int32 form of fxbn.export_tosa does).

Each BN layer is imported with fxbn.importers.conv_bn_layer (int8 weights per channel, int32 accumulator input with
its exact bound; activations int8 with scale 0.03 in, 0.05 out, zero point -128 -- fixed values, no calibration;
the RESCALE constraints depend on the signs of the multipliers, the clamp and the biases' form, not on these
scales' exact values) and checked with fxbn.export_tosa.rescale_report.  Prints one row per network.

    python -m experiments.tosa_rescale_share [DATA_DIR]
"""
import collections
import pathlib
import sys

import numpy as np

from experiments import run
from fxbn import InfeasibleError, export_tosa, importers


def f32(x):
    """x rounded to float32, held as float64: scales as deployment formats store them (two such scales
    multiply exactly, which conv_bn_layer requires)."""
    return float(np.float32(x))


NETWORKS = ("resnet20", "resnet56", "darknet_tiny", "mobilenet", "resnet50")


def network_layers(name, data_root):
    graph = run.load_network(name, data_root)
    nodes = {n.name: n for n in graph.nodes}
    act_in, act_out = importers.ActivationQuant(f32(0.03), -128), importers.ActivationQuant(f32(0.05), -128)
    for node in graph.nodes:
        if node.op != "bn" or nodes[node.src[0]].op != "conv":
            continue
        conv = nodes[node.src[0]]
        axis = 2 if conv.attrs.get("depthwise") else conv.attrs["w"].ndim - 1
        w_q, w_scale = importers.quantize_weights(conv.attrs["w"], axis=axis)
        act = node.attrs.get("act")
        relu = act if act in ("relu", "relu6") else False
        try:
            yield node.name, importers.conv_bn_layer(node.attrs["bn"], w_q, w_scale, act_in, act_out, relu=relu,
                                                     axis=axis, conv_bias=conv.attrs.get("bias"),
                                                     exact_bias_fold=False)
        except (InfeasibleError, ValueError) as e:
            yield node.name, e


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    data_root = pathlib.Path(argv[0] if argv else pathlib.Path(__file__).resolve().parents[1] / ".." / "shared" /
                             "data").resolve()
    print("| network | BN layers | single RESCALE | ADD + RESCALE | multi-word int32 (exact) | necessary conditions hold "
          "| single RESCALE fails: reason (count) |")
    print("|---|---|---|---|---|---|---|")
    total = collections.Counter()
    for name in NETWORKS:
        rows = list(network_layers(name, data_root))
        reasons = collections.Counter()
        single = necessary = add = multi = 0
        for _, layer in rows:
            if isinstance(layer, Exception):
                reasons["not solvable: " + str(layer).split(":")[0]] += 1
                continue
            r = export_tosa.rescale_report(layer)
            single += r["single"]
            necessary += r["necessary"]
            add += r["add_rescale"]
            try:
                export_tosa.multiword_params(layer)
                multi += 1
            except ValueError:
                pass
            if not r["single"]:
                reasons[r["reason"].split(" (")[0].split(":")[-1].strip()] += 1
        total.update(layers=len(rows), single=single, necessary=necessary, add=add, multi=multi)
        why = "; ".join(f"{k} ({v})" for k, v in reasons.most_common())
        print(f"| {name} | {len(rows)} | {single} | {add} | {multi} | {necessary} | {why} |")
    pct = lambda k: f"{total[k]} ({100 * total[k] / total['layers']:.0f}%)"  # noqa: E731
    print(f"| all | {total['layers']} | {pct('single')} | {pct('add')} | {pct('multi')} | {pct('necessary')} | |")


if __name__ == "__main__":
    main()
