"""Every BN layer of the shared networks' integer graphs on every embedded target: TOSA (reference model), LiteRT,
generated C (gcc on the host; aarch64 and 32-bit ARM under qemu-user with --cross), each compared element for
element with FixedPointBN.apply.

The layers are those of fxbn.network's integer graph as experiments.nets builds the networks and Graph.quantize
quantizes them (int8 weights, exact int32 accumulator bounds: each layer's in_range is its accumulator's real
range), after a min/max calibration on a few images (``--calib-cifar`` per class, ``--calib-imagenet`` images; the
full-size runs of experiments.run calibrate on more: the layers differ in their constants, not in kind).  Darknet's
LeakyReLU BNs are two layers each (fxbn.network's max of two).

Inputs per layer (int32 accumulators, [K, C], channels last): per channel ``--sample`` uniform values of its
in_range, the range ends lo, lo+1, hi-1, hi and 0, -1 (clipped), and every breakpoint neighbourhood T-1, T, T+1 of
the layer's exact reference breakpoints (where the output changes level: exactness hinges there).

    python -m experiments.targets_table [--nets resnet20 ...] [--sample 2000] [--cross] [--data DIR]

Writes experiments/results/targets_table.json and targets_table.md (the table of the README).
"""
import argparse
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

from experiments import data, run
from fxbn import codegen, export_tosa

RESULTS = pathlib.Path(__file__).resolve().parent / "results"
NETWORKS = ("resnet20", "resnet56", "darknet_tiny", "mobilenet", "resnet50")
C_TOOLCHAINS = {   # name -> (compiler, flags, runner)
    "gcc": ("gcc", ["-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic", "-O2"], []),
    "aarch64-qemu": ("aarch64-linux-gnu-gcc", ["-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic", "-O2",
                                               "-static"], ["qemu-aarch64"]),
    "armhf-qemu": ("arm-linux-gnueabihf-gcc", ["-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic", "-O2",
                                               "-static"], ["qemu-arm"]),
}


def network_layers(name, data_root, calib_cifar=10, calib_imagenet=16):
    """[(layer name, FixedPointBN)] of the network's integer graph, BN layers in graph order."""
    graph = run.load_network(name, data_root)
    if name in ("resnet20", "resnet56"):
        px, labels = data.cifar_test(data_root, limit_per_class=calib_cifar)
    else:
        crop = None if name == "darknet_tiny" else 224
        px, _, _ = data.imagenet_images(data_root, size=224 if crop is None else 256, crop=crop, limit=calib_imagenet)
    graph.calibrate([px[i:i + 16] for i in range(0, len(px), 16)])
    graph.quantize()
    out = []
    for node in graph.bn_nodes():
        layers = graph.q[node.name]["layers"]
        for i, layer in enumerate(layers):
            out.append((node.name + ("" if len(layers) == 1 else f"#{i}"), layer))
    return out


def layer_inputs(layer, sample, seed=0):
    """[K, C] inputs (layer.in_dtype) of the sampling scheme in the module docstring."""
    lo, hi = layer.in_range[:, 0].astype(np.int64), layer.in_range[:, 1].astype(np.int64)
    info = np.iinfo(layer.in_dtype)
    if info.bits <= 16:                                            # exhaustive
        vals = np.arange(info.min, info.max + 1, dtype=np.int64)
        return np.clip(vals[:, None], lo, hi).astype(layer.in_dtype)
    rng = np.random.default_rng(seed)
    d, T = layer.reference_breakpoints("core")
    Tx = np.asarray(T, np.int64) * np.where(np.asarray(d) == 0, 1, np.asarray(d))[:, None]   # back to x's sign
    near = np.concatenate([Tx - 1, Tx, Tx + 1], axis=1).T                                     # [3 levels, C]
    ends = np.stack([lo, lo + 1, hi - 1, hi, np.zeros_like(lo), -np.ones_like(lo)])
    rand = rng.integers(lo, hi + 1, size=(sample, layer.channels))
    x = np.concatenate([ends, near, rand])
    return np.clip(x, lo, hi).astype(layer.in_dtype)


# ---------------------------------------------------------------------------------------------- targets
def run_tosa(layer, x, workdir):
    form = export_tosa.layer_to_tosa(layer, workdir, x.shape[0])
    return export_tosa.run_reference_model(workdir, x), form


def run_litert(layer, x):
    from fxbn import export_litert
    return export_litert.run_litert(export_litert.layer_to_tflite(layer, x.shape[0]), x)


_DRIVER = r"""#include <stdio.h>
#include <stdlib.h>
%(includes)s
int main(int argc, char **argv)
{
    int i;
    for (i = 1; i + 3 < argc + 1; i += 4) {
        int k = atoi(argv[i]);
        size_t pixels = (size_t)strtoul(argv[i + 1], NULL, 10), bad = 0, n = 0, isz = 0, osz = 0;
        void *x, *y;
        FILE *f;
        int rc = -1;
        switch (k) {
%(sizes)s
        default: return 5;
        }
        x = malloc(n * isz + 1);
        y = malloc(n * osz + 1);
        if (!x || !y) return 2;
        f = fopen(argv[i + 2], "rb");
        if (!f || fread(x, isz, n, f) != n) return 3;
        fclose(f);
        switch (k) {
%(calls)s
        default: return 5;
        }
        if (rc != 0) { printf("layer %%d: rc %%d at %%lu\n", k, rc, (unsigned long)bad); return 6; }
        f = fopen(argv[i + 3], "wb");
        if (!f || fwrite(y, osz, n, f) != n) return 4;
        fclose(f);
        free(x);
        free(y);
    }
    return 0;
}
"""


def build_c(layers, workdir, toolchain):
    """One executable for all layers (generated C + a driver calling name_nhwc); returns the command prefix."""
    cc, flags, runner = C_TOOLCHAINS[toolchain]
    includes, sizes, calls, srcs = [], [], [], []
    for k, layer in enumerate(layers):
        name = f"l{k}"
        _, c = layer.to_c(workdir, name)
        srcs.append(c)
        includes.append(f'#include "{name}.h"')
        it, ot = codegen._C_TYPES[layer.in_dtype.name], codegen._C_TYPES[layer.out_dtype.name]
        sizes.append(f"        case {k}: n = pixels * {layer.channels}; isz = sizeof({it}); osz = sizeof({ot}); "
                     "break;")
        calls.append(f"        case {k}: rc = {name}_nhwc((const {it} *)x, ({ot} *)y, pixels, &bad); break;")
    driver = os.path.join(workdir, "driver.c")
    with open(driver, "w") as f:
        f.write(_DRIVER % {"includes": "\n".join(includes), "sizes": "\n".join(sizes), "calls": "\n".join(calls)})
    exe = os.path.join(workdir, "driver")
    res = subprocess.run([cc, *flags, "-I", workdir, driver, *srcs, "-o", exe], capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"{cc} failed: {res.stderr[-3000:]}")
    return runner + [exe]


def run_c(cmd, jobs, workdir):
    """jobs: [(k, x, out_dtype)] -> outputs, one process for all."""
    args, outs = [], []
    for k, x, dtype in jobs:
        ip, op = os.path.join(workdir, f"{k}.in"), os.path.join(workdir, f"{k}.out")
        x.tofile(ip)
        args += [str(k), str(x.shape[0]), ip, op]
        outs.append((op, dtype, x.shape))
    res = subprocess.run(cmd + args, capture_output=True, text=True, timeout=3600)
    if res.returncode != 0:
        raise RuntimeError(f"driver failed ({res.returncode}): {res.stdout[-2000:]}{res.stderr[-2000:]}")
    return [np.fromfile(op, dtype=dtype).reshape(shape) for op, dtype, shape in outs]


# ---------------------------------------------------------------------------------------------- main
def evaluate(name, layers, sample, targets, log=print):
    """Per target: layers, inputs checked, mismatching elements, mismatching layers, seconds; plus TOSA forms."""
    rows = {t: {"layers": 0, "inputs": 0, "mismatches": 0, "bad_layers": [], "seconds": 0.0} for t in targets}
    forms = {"rescale": 0, "int32": 0, "add_rescale": 0, "multiword": 0, "single_rescale_possible": 0}
    inputs = [(lname, layer, layer_inputs(layer, sample, seed=k)) for k, (lname, layer) in enumerate(layers)]
    expected = [layer.apply(x, axis=-1) for _, layer, x in inputs]

    def record(target, lname, x, y, exp, t0):
        r = rows[target]
        r["layers"] += 1
        r["inputs"] += int(x.size)
        bad = int(np.count_nonzero(y != exp)) if y.shape == exp.shape and y.dtype == exp.dtype else int(x.size)
        r["mismatches"] += bad
        if bad:
            r["bad_layers"].append(lname)
        r["seconds"] += time.perf_counter() - t0

    with tempfile.TemporaryDirectory() as tmp:
        for (lname, layer, x), exp in zip(inputs, expected):
            forms["single_rescale_possible"] += bool(export_tosa.rescale_report(layer)["single"])
            if "tosa" in targets:
                t0 = time.perf_counter()
                d = os.path.join(tmp, "tosa_" + lname.replace("/", "_").replace("#", "_"))
                y, form = run_tosa(layer, x, d)
                forms[form] += 1
                record("tosa", lname, x, y, exp, t0)
                shutil.rmtree(d)
            if "litert" in targets:
                t0 = time.perf_counter()
                record("litert", lname, x, run_litert(layer, x), exp, t0)
        for tc in (t for t in targets if t in C_TOOLCHAINS):
            t0 = time.perf_counter()
            work = os.path.join(tmp, tc)
            os.makedirs(work)
            cmd = build_c([layer for _, layer, _ in inputs], work, tc)
            ys = run_c(cmd, [(k, x, layer.out_dtype) for k, (_, layer, x) in enumerate(inputs)], work)
            for (lname, layer, x), exp, y in zip(inputs, expected, ys):
                record(tc, lname, x, y, exp, time.perf_counter())
            rows[tc]["seconds"] = time.perf_counter() - t0
            shutil.rmtree(work)
    log(f"{name}: " + ", ".join(f"{t} {r['mismatches']} mismatches / {r['inputs']:,} ({r['seconds']:.0f} s)"
                                for t, r in rows.items()))
    return rows, forms


TARGET_LABEL = {
    "tosa": "TOSA reference model (tosa-tools 2026.8.0), multi-word int32 form",
    "litert": "LiteRT (ai-edge-litert 2.3.0), int64 detour",
    "gcc": "C99, gcc -O2 (x86-64)",
    "aarch64-qemu": "C99, aarch64-linux-gnu-gcc -static, qemu-aarch64",
    "armhf-qemu": "C99, arm-linux-gnueabihf-gcc -static, qemu-arm (32-bit)",
}


def markdown(result):
    lines = ["| target | network | BN layers | inputs checked | mismatches |", "|---|---|---|---|---|"]
    for t in result["targets"]:
        tot = [0, 0, 0]
        for net in result["networks"]:
            r = result["rows"][net][t]
            lines.append(f"| {TARGET_LABEL[t]} | {net} | {r['layers']} | {r['inputs']:,} | {r['mismatches']} |")
            tot = [tot[0] + r["layers"], tot[1] + r["inputs"], tot[2] + r["mismatches"]]
        lines.append(f"| {TARGET_LABEL[t]} | **all** | {tot[0]} | {tot[1]:,} | **{tot[2]}** |")
    lines += ["", "| network | BN layers | single RESCALE exact | TOSA form used: multi-word / int32 / RESCALE |",
              "|---|---|---|---|"]
    for net in result["networks"]:
        f = result["forms"][net]
        n = sum(f[k] for k in ("rescale", "int32", "add_rescale", "multiword"))
        lines.append(f"| {net} | {n} | {f['single_rescale_possible']} | {f['multiword']} / {f['int32']} / "
                     f"{f['rescale']} |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--nets", nargs="+", default=list(NETWORKS), choices=NETWORKS)
    ap.add_argument("--sample", type=int, default=2000, help="uniform inputs per channel (default 2000)")
    ap.add_argument("--cross", action="store_true", help="also aarch64 and armhf C under qemu-user")
    ap.add_argument("--calib-cifar", type=int, default=10)
    ap.add_argument("--calib-imagenet", type=int, default=16)
    ap.add_argument("--data", type=pathlib.Path,
                    default=pathlib.Path(__file__).resolve().parents[1] / ".." / "shared" / "data")
    ap.add_argument("--out", type=pathlib.Path, default=RESULTS)
    args = ap.parse_args(argv)
    targets = ["tosa", "litert", "gcc"] + (["aarch64-qemu", "armhf-qemu"] if args.cross else [])
    t_start = time.perf_counter()
    result = {"sample_per_channel": args.sample, "targets": targets, "networks": args.nets, "rows": {}, "forms": {},
              "calibration": {"cifar_per_class": args.calib_cifar, "imagenet_images": args.calib_imagenet}}
    for net in args.nets:
        t0 = time.perf_counter()
        layers = network_layers(net, args.data.resolve(), args.calib_cifar, args.calib_imagenet)
        print(f"{net}: {len(layers)} layers quantized in {time.perf_counter() - t0:.0f} s", flush=True)
        result["rows"][net], result["forms"][net] = evaluate(net, layers, args.sample, targets)
        sys.stdout.flush()
    result["wall_seconds"] = time.perf_counter() - t_start
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "targets_table.json").write_text(json.dumps(result, indent=1))
    (args.out / "targets_table.md").write_text(markdown(result))
    print(markdown(result))
    bad = sum(r["mismatches"] for net in result["rows"].values() for r in net.values())
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
