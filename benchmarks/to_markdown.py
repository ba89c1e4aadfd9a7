"""Markdown table (for the README) from the JSON written by benchmarks/bench.py.

Usage: python benchmarks/to_markdown.py [benchmarks/results/bench.json]
"""
import json
import pathlib
import statistics
import sys


def ratio(slow, fast):
    """As benchmarks/bench.py: the median of per-round ratios when sampled together, else the ratio of medians."""
    a, b = slow.get("samples_s"), fast.get("samples_s")
    if a and b and len(a) == len(b) and slow.get("group") is not None and slow.get("group") == fast.get("group"):
        return statistics.median(x / y for x, y in zip(a, b))
    return slow["median_s"] / fast["median_s"]


def main():
    path = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else pathlib.Path(__file__).parent / "results" / "bench.json")
    data = json.loads(path.read_text())
    env, rows = data["environment"], data["kernel"]
    print(f"Machine: {env['cpu']}, {env['cores']} cores ({env.get('fxbn_kernel', '?')} kernel bodies); "
          f"Python {env['python']}, NumPy {env['numpy']}, torch {env['torch']}, {env.get('gcc')}; "
          f"load average {env['loadavg_at_start'][0]:.1f} at start (shared machine).  "
          f"Command: `{data['command']}` ({env['date_utc']}).  Times: medians of round-robin samples; ratios: medians of per-round ratios.\n")

    def get(impl, t, **sel):
        for r in rows:
            if r["impl"] == impl and r["threads"] == t and all(r[k] == v for k, v in sel.items()):
                return r
        return None

    print("| case | shape | layout | threads | fxbn µs | kernel µs | fxbn GB/s | % of copy | torch µs | × torch | "
          "NumPy f32 µs | × f32 | × f64 | × NumPy int |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    keys = []
    for r in rows:
        k = (r["case"], r["size"], r["layout"])
        if k not in keys:
            keys.append(k)
    threads = sorted({r["threads"] for r in rows if r["impl"] == "fxbn"})
    for case, size, layout in keys:
        sel = dict(case=case, size=size, layout=layout)
        npf, npf64, npi = get("np_float", 1, **sel), get("np_float64", 1, **sel), get("np_int", 1, **sel)
        for t in threads:
            f, cp, tr = get("fxbn", t, **sel), get("copy", t, **sel), get("torch", t, **sel)
            fk = get("fxbn_kernel", t, **sel)
            kern = f"{fk['median_s'] * 1e6:.0f}" if fk else "—"
            fm = f["median_s"]
            shape = "×".join(str(v) for v in f["shape"])
            torch_us = f"{tr['median_s'] * 1e6:.0f}" if tr else "—"
            x_torch = f"{ratio(tr, f):.1f}" if tr else "—"
            copy_pct = 100 * ratio(cp, f) * (f["in_bytes"] + f["out_bytes"]) / (2 * f["in_bytes"])
            print(f"| {case} | {shape} | {layout} | {t} | {fm * 1e6:.0f} | {kern} | {f['gbps']:.1f} | "
                  f"{copy_pct:.0f}% | {torch_us} | {x_torch} | {npf['median_s'] * 1e6:.0f} | "
                  f"{ratio(npf, f):.1f} | {ratio(npf64, f):.1f} | {ratio(npi, f):.1f} |")
    print()
    for r in data["solver"]:
        if "median_s" in r:
            print(f"- {r['impl']}: {r['median_s']:.3f} s median ({r['channels']} channels, {r['layers']} layers)")
    print()
    for t in data["targets"]:
        mark = "n/a" if t["met"] is None else ("met" if t["met"] else "missed")
        v = t["value"]
        print(f"- [{mark}] {t['target']}: {'n/a' if v is None else format(v, '.3g')}")


if __name__ == "__main__":
    main()
