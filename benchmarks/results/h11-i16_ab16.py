"""Thread-CPU medians of apply(x, out=y, threads=1) for int16 -> int16 bench layers (bench.bn_layer), NHWC and NCHW."""
import sys, time, statistics
import numpy as np
import fxbn  # from PYTHONPATH, before bench
sys.path.insert(0, "/work/h11-i16/benchmarks")
import bench
from fxbn import _core
_core.kernel_isa(sys.argv[1])
shapes = [tuple(int(v) for v in s.split(",")) for s in sys.argv[2:]]
print(fxbn.__file__)
for shape in shapes:
    n, c, h, w = shape
    rng = np.random.default_rng(2026)
    layer, _ = bench.bn_layer(c, "int16", "int16", rng)
    x = rng.integers(-32768, 32767, shape, endpoint=True).astype(np.int16)
    for layout in ("NHWC", "NCHW"):
        xl = np.ascontiguousarray(x.transpose(0, 2, 3, 1)) if layout == "NHWC" else x
        axis = -1 if layout == "NHWC" else 1
        y = np.empty_like(xl)
        f = lambda: layer.apply(xl, axis=axis, out=y, threads=1)
        size = xl.size
        reps = max(5, int(2e6 // size))
        for _ in range(reps): f()
        res = []
        for r in range(15):
            t0 = time.thread_time_ns()
            for _ in range(reps): f()
            res.append((time.thread_time_ns() - t0) / reps / 1e3)
        print(f"{layout} {shape}: median {statistics.median(res):.2f} us  min {min(res):.2f}")
