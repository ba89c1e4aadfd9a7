"""In-process A/B: main's and this worktree's _core loaded side by side, Kernel.run alternated (thread CPU)."""
import sys, time, statistics, importlib.machinery, importlib.util
import numpy as np
sys.path.insert(0, "/work/h11-shift/benchmarks")
import fxbn, bench
def load(path):
    loader = importlib.machinery.ExtensionFileLoader("fxbn._core", path)
    spec = importlib.util.spec_from_file_location("fxbn._core", path, loader=loader)
    m = importlib.util.module_from_spec(spec); loader.exec_module(m); return m
so = "fxbn/_core.cpython-311-x86_64-linux-gnu.so"
mods = {"main": load("/work/main/" + so), "new": load("/work/h11-shift/" + so)}
case = sys.argv[1]; shape = tuple(int(v) for v in sys.argv[2].split(",")); reps = int(sys.argv[3]) if len(sys.argv) > 3 else 200
rng = np.random.default_rng(2026)
n, c, h, w = shape
if case == bench.R50_CASE:
    layer, a, b = bench.resnet50_layer()
    lo, hi = (layer.in_range[:, k].reshape(1, c, 1, 1) for k in (0, 1))
    x = np.clip(np.rint(rng.normal(0, 1, shape) * ((hi - lo) / 16)), lo, hi).astype(np.int32)
else:
    layer, a, b = bench.affine_layer(c, rng, in_bits=bench._in_bits(case))
    lim = 1 << (bench._in_bits(case) - 1) if bench._in_bits(case) else 1 << 31
    x = np.clip(np.rint(rng.normal(0, 1, shape) * (lim / 8)), -lim, lim - 1).astype(np.int32)
x = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
outer, inner = x.size // c, 1
ks, ys = {}, {}
for k, m in mods.items():
    m.kernel_isa("avx2")
    ks[k] = m.Kernel(layer.multiplier, layer.bias, layer._shift32, layer._lo, layer._hi, *layer.out_range,
                     bool(np.all(layer.accumulator_bits <= 32)))
    ys[k] = np.empty(x.shape, np.int8)
for k in ks:
    for _ in range(50): ks[k].run(x, ys[k], outer, inner, 1)
assert np.array_equal(ys["main"], ys["new"])
res = {k: [] for k in ks}
for r in range(int(sys.argv[4]) if len(sys.argv) > 4 else 31):
    for k in (ks if r % 2 else reversed(list(ks))):
        t0 = time.thread_time_ns()
        for _ in range(reps): ks[k].run(x, ys[k], outer, inner, 1)
        res[k].append((time.thread_time_ns() - t0) / reps / 1e3)
ratios = [b / a for a, b in zip(res["main"], res["new"])]
print(f"{case} {shape}: main {statistics.median(res['main']):.2f}us new {statistics.median(res['new']):.2f}us "
      f"ratio median {statistics.median(ratios):.3f} (q1 {np.quantile(ratios, .25):.3f} q3 {np.quantile(ratios, .75):.3f})")
