"""PNG plots from experiments/results/*.json: minimal-shift histogram per network, mismatch rate per layer and scheme;
also rewrites results.md from all the JSON files.

    python -m experiments.plots [--results experiments/results]
"""
import argparse
import json
import pathlib

import numpy as np

from experiments.run import RESULTS, markdown


def shift_histogram(result, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shifts = np.concatenate([np.asarray(row["shifts"]) for row in result["layers"]])
    fig, ax = plt.subplots(figsize=(6, 3.2))
    bins = np.arange(shifts.min(), shifts.max() + 2) - 0.5
    ax.hist(shifts, bins=bins, color="#3b6ea8")
    ax.set_xlabel("minimal shift s (per channel)")
    ax.set_ylabel("channels")
    ax.set_title(f"{result['network']}: minimal shifts of {len(shifts)} BN channels")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def mismatch_rates(result, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    layers = result["layers"]
    schemes = ["fxbn"] + [s for s in result["peer_schemes"] if s != "fxbn"]
    x = np.arange(len(layers))
    fig, ax = plt.subplots(figsize=(max(6, 0.22 * len(layers) + 2), 3.6))
    floor = 0.5 / max(row["outputs"] for row in layers)  # zero rates drawn at the floor of the log axis
    for scheme in schemes:
        counts = [row["mismatch"].get(scheme) for row in layers]
        rates = np.array([np.nan if n is None else n / row["outputs"] for n, row in zip(counts, layers)], float)
        ax.plot(x, np.where(rates == 0, floor, rates), marker="o", ms=3, lw=1, label=scheme)
    ax.set_yscale("log")
    ax.axhline(floor, color="grey", lw=0.5, ls=":")
    ax.set_xticks(x[:: max(1, len(x) // 20)])
    ax.set_xlabel("BN layer (network order)")
    ax.set_ylabel("mismatching outputs / outputs")
    ax.set_title(f"{result['network']}: mismatches vs the exact reference (floor line = 0)")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--results", type=pathlib.Path, default=RESULTS)
    args = p.parse_args(argv)
    results = [json.loads(path.read_text()) for path in sorted(args.results.glob("*.json"))]
    (args.results / "results.md").write_text(markdown(results) + "\n")
    for result in results:
        shift_histogram(result, args.results / f"{result['network']}_shifts.png")
        mismatch_rates(result, args.results / f"{result['network']}_mismatch.png")
        print(f"plots for {result['network']} written")


if __name__ == "__main__":
    main()
