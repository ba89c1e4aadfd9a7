"""Is the experiments' previous approximate add (``add_requant``, fixed 2^30 multipliers) equal to the exact add on
EVERY pair of every add node's input box, for a network calibrated as ``experiments.run`` calibrates it?  If so,
the BN tables measured with ``add_requant`` describe the exact-add network too (same activations everywhere).

    python -m experiments.add_box resnet50 --limit-imagenet 200      # the BN table's ResNet-50 (calib: first 200)

Writes experiments/results/add_box_<net>.json: per add node the box size and the wrong outputs of fxbn and
add_requant against the exact reference (Fractions) over the whole box.
"""
import argparse
import json
import time

from experiments import add_peers, data, run


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("net", choices=["resnet20", "resnet56", "resnet50"])
    data.add_run_arguments(p, add_peers.RESULTS)
    args = p.parse_args(argv)
    t0 = time.time()
    graph = run.load_network(args.net, args.data)
    _, _, calib, desc = run.load_images(args.net, args.data, args)
    graph.calibrate([calib[i:i + args.batch] for i in range(0, len(calib), args.batch)], method=args.method,
                    percentile=args.percentile)
    graph.quantize(rounding=args.rounding)
    rows = {}
    for node in graph.nodes:
        if node.op == "add":
            add_peers.reference_table(graph, node.name)
    add_peers.box_counts(graph, ["fxbn", "add_requant"], rows)
    out = {"network": args.net, "calibration": desc, "rounding": args.rounding, "adds": rows,
           "seconds": time.time() - t0}
    path = args.out / f"add_box_{args.net}.json"
    path.write_text(json.dumps(out, indent=1) + "\n")
    wrong = {k: sum(r["box_wrong"][k] for r in rows.values()) for k in ("fxbn", "add_requant")}
    print(f"{path}: {len(rows)} adds, {sum(r['box_pairs'] for r in rows.values()):,} pairs, wrong: {wrong}")


if __name__ == "__main__":
    main()
