"""fxbn benchmark (issue 5): the kernel side by side with PyTorch, NumPy and a plain copy, plus solver/verifier time.

Usage:
    python benchmarks/bench.py [--quick] [--repeats N] [--json PATH] [--no-torch]

Everything is measured in ONE run on this machine; every figure is the median of repeated timed samples taken after
a warm-up (each sample times enough calls to last >= ~5 ms, after one untimed call).  The implementations of one
row are sampled round robin, so that their ratios compare runs made under the same load of this shared machine.  Ratios compare medians from the same run.

Rows (per shape, layout and thread count):
  fxbn        FixedPointBN.apply(x, axis, out=y, threads=t) (preallocated output, as np.copyto)
  fxbn_alloc  FixedPointBN.apply(x, axis, threads=t)         (allocates its output, as torch does)
  fxbn_kernel _core.Kernel(...).run on the same arrays          (the kernel without the Python API layer)
  torch       torch.ops.quantized.batch_norm2d on the same uint8 bytes (quint8, NCHW and channels_last),
              torch.set_num_threads(t); skipped with a note when torch is absent
  np_float    x.astype(float32) -> *= a -> += b -> rint -> clip -> astype(out)  (NumPy, one thread)
  np_float64  the same in float64 (exact for int32 inputs; float32 is not)
  np_int      x.astype(int64) -> *= A -> += B -> >>= s -> clip -> astype(out)   (the fixed-point formula in NumPy)
  copy        np.copyto of the input bytes (t=2: two Python threads copying halves; numpy releases the GIL)
Bandwidth = (bytes read + bytes written) / time; for copy both equal the input size.
Large tensors: every sample starts after the same read-only sweep of a buffer larger than the L3 (Scrub), so no
implementation pays for the write-back of another's dirty lines, then LARGE_WARM untimed calls (steady state).
Ratios (x torch, x numpy, % of copy) are medians of per-round ratios of samples taken in the same round (ratio of
medians where the two were not sampled together: NumPy rows at t=2).

Targets (issue 5): fxbn >= 3x torch on uint8 NCHW (1 and 2 threads); >= 8x np_float on int32->int8;
>= 60% of copy bandwidth for out-of-cache tensors; solver < 0.5 s and verifier < 1 s on the ResNet-50 set.
Issue 14 (every CPU, e.g. the AVX2 body: --isa avx2 or FXBN_ISA=avx2): >= 3x torch on uint8 NHWC too; >= 8x np_float
on int32->int8 with a real layer's accumulator range (rows "int32->int8 +-2^23") and >= 5x with the full int32 range.
Every run prints and records (JSON "environment") the CPU model and the kernel ISA body it measured.
"""
import argparse
import datetime
import json
import os
import pathlib
import platform
import statistics
import subprocess
import sys
import threading
import time
import warnings

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import fxbn  # noqa: E402
from fxbn import _core  # noqa: E402

try:
    import torch
    warnings.filterwarnings("ignore", message=".*quantized tensor creation functions.*deprecated")
except ImportError:  # torch is optional
    torch = None

# The accumulator range of a real layer for the int32 -> int8 rows marked "+-2^23": ResNet-50's conv accumulators
# (int8 weights and activations) span 17-26 bits by layer; 24 bits is a typical middle one.
ADD_BITS = 24

def _in_bits(case):
    """The declared accumulator width of an "int32->int8 +-2^k" row (k + 1 bits), None for the full int32 range."""
    return int(case.split("2^")[1]) + 1 if "+-2^" in case else None


# A real layer for the row "int32->int8 r50 2a_2b": ResNet-50's bn2a_branch2b (3x3 conv, 64 channels at 56 x 56, the
# small shape) as `python -m verify` builds it from ../shared/data/imagenet/resnet50.npz: int8 per-channel weights,
# each channel's exact accumulator bound (asymmetric, 21-23 bits, different per channel) and the activation
# quantization of `python -m experiments.activations resnet50 --calib 16` (minmax over the first 16 sample images;
# scales rounded up to float32, as calibration returns them; were 0.03331106597302007, 0.04684354370715572).
R50_CASE = "int32->int8 r50 2a_2b"
R50_BN = "bn2a_branch2b"
R50_ACTS = {"in": dict(scale=0.03331106901168823, zero_point=-128, dtype="int8", qmin=-128, qmax=127),
            "out": dict(scale=0.046843547374010086, zero_point=-128, dtype="int8", qmin=-128, qmax=127)}


def resnet50_layer():
    """(FixedPointBN, a, b) of R50_BN, or None without the data directory."""
    from experiments import data
    from fxbn import importers
    from verify import model as vm

    path = data.data_dir() / "imagenet" / "resnet50.npz"
    if not path.exists():
        return None
    m = vm.load_model(str(path))
    pair = next(p for p in m.pairs if p.bn == R50_BN)
    params, w, bias = vm._bn_and_weights(m, pair, 0.001)
    w_q, w_scale = importers.quantize_weights(w, axis=pair.weight_axis)
    act_in, act_out = (importers.ActivationQuant(**{k: R50_ACTS[side][k] for k in ("scale", "zero_point", "dtype",
                                                                                   "qmin", "qmax")})
                       for side in ("in", "out"))
    layer = importers.conv_bn_layer(params, w_q, w_scale, act_in, act_out, relu=True, axis=pair.weight_axis,
                                    rounding="half_up", conv_bias=bias, exact_bias_fold=False)
    a, b = float_affine(layer)
    return layer, a, b


# The clock of the kernel rows: wall time (perf_counter), or with --clock cpu the process's CPU time (process_time:
# time spent descheduled by other tenants of a loaded machine is not counted; meaningful for one-thread rows only).
CLOCK = time.perf_counter


# ResNet-50's 53 BatchNorm layers (conv1, then per bottleneck bn1, bn2, bn3 and one downsample BN per stage).
RESNET50_BN = [64]
for width, blocks in ((64, 3), (128, 4), (256, 6), (512, 3)):
    for i in range(blocks):
        RESNET50_BN += [width, width, 4 * width]
        if i == 0:
            RESNET50_BN.append(4 * width)
assert len(RESNET50_BN) == 53 and sum(RESNET50_BN) == 26560


# ---------------------------------------------------------------------------------------------- timing helpers
def measure(fn, repeats, min_time=5e-3, warmup=3):
    """Median seconds per call: warm-up calls, then `repeats` samples of `number` calls each."""
    return measure_group({"f": fn}, repeats, min_time, warmup)["f"]


def _calibrate(fn, min_time, warmup):
    for _ in range(warmup):
        fn()
    t0 = CLOCK()
    fn()
    one = max(CLOCK() - t0, 1e-7)
    return max(1, int(min_time / one))


def measure_group(fns, repeats, min_time=5e-3, warmup=3, pause=None, scrub=None, warm=1):
    """Like measure for several functions whose samples are interleaved (round robin), so that the ratios between
    them compare runs made under the same machine load.  pause(a, b) is called between a sample of a and one of b;
    before every sample: scrub() (see Scrub), then `warm` untimed calls."""
    numbers = {k: _calibrate(f, min_time, warmup) for k, f in fns.items()}
    samples = {k: [] for k in fns}
    prev = None
    for _ in range(repeats):
        for k, f in fns.items():
            if pause is not None and prev is not None:
                pause(prev, k)
            prev = k
            n = numbers[k]
            if scrub is not None:
                scrub()
            for _ in range(warm):
                f()  # untimed: bring this function's data back into cache after the others ran (steady state)
            t0 = CLOCK()
            for _ in range(n):
                f()
            samples[k].append((CLOCK() - t0) / n)
    return {k: {"median_s": statistics.median(v), "min_s": min(v), "max_s": max(v), "repeats": repeats,
                "number": numbers[k], "samples_s": v} for k, v in samples.items()}


class Scrub:
    """Read a buffer larger than the last-level cache: the lines other implementations left dirty are written back
    here, not inside the next implementation's timed calls.  This machine's L3 is large (hundreds of MB, shared):
    without it, whichever implementation follows NumPy's int64 temporaries pays for their write-back (about 2x on
    the 32 MB tensors).  After a scrub the L3 takes several passes over a tensor to hold it again (adaptive
    insertion: 1 pass 2.9 ms, 2 passes 2.4 ms, 4 passes 1.7 ms, 8 passes 1.6 ms for the int32 kernel on 32 x 64 x
    56 x 56), so large-tensor samples follow LARGE_WARM untimed calls: every implementation is timed in the same
    steady state, the one a layer sees when its input was just written by the layer before."""

    def __init__(self, min_bytes=64 << 20):
        size = min_bytes
        try:
            text = pathlib.Path("/sys/devices/system/cpu/cpu0/cache/index3/size").read_text().strip()
            unit = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(text[-1], 1)
            size = max(size, int(text.rstrip("KMG")) * unit * 5 // 4)
        except (OSError, ValueError):
            pass
        self.nbytes = min(size, 1 << 30)
        self.buffer = np.ones(self.nbytes // 8, np.int64)

    def __call__(self):
        self.buffer.sum()


def ratio(slow, fast):
    """slow / fast: the median of the per-round ratios when both were sampled in the same rounds (robust to the load
    of a shared machine changing during the run), else the ratio of the medians."""
    a, b = slow.get("samples_s"), fast.get("samples_s")
    if a and b and len(a) == len(b) and slow.get("group") is not None and slow.get("group") == fast.get("group"):
        return statistics.median(x / y for x, y in zip(a, b))
    return slow["median_s"] / fast["median_s"]


def settle(delay=0.01):
    """Let OpenMP worker threads of the previous library stop spinning (two OpenMP runtimes, torch's and ours,
    share 2 cores)."""
    time.sleep(delay)


def _pause(prev, nxt):
    if ("torch" in prev) != ("torch" in nxt):
        settle(0.005)


# ---------------------------------------------------------------------------------------------- layers
def bn_layer(channels, in_dtype, out_dtype, rng):
    """A realistic quantized BN (running statistics, per-tensor scales, zero points of the dtype)."""
    gamma = rng.uniform(0.5, 1.5, channels).astype(np.float32).astype(np.float64)
    beta = rng.uniform(-0.5, 0.5, channels).astype(np.float32).astype(np.float64)
    mean = rng.uniform(-0.3, 0.3, channels).astype(np.float32).astype(np.float64)
    var = rng.uniform(0.5, 2.0, channels).astype(np.float32).astype(np.float64)
    zin = 128 if in_dtype == "uint8" else 0
    zout = 128 if out_dtype == "uint8" else 0
    in_scale = {"uint8": 0.05, "int8": 0.05, "int16": 2e-4}[in_dtype]
    out_scale = {"uint8": 0.05, "int8": 0.05, "int16": 2e-4}[out_dtype]
    params = dict(gamma=gamma, beta=beta, mean=mean, var=var, eps=1e-5, in_scale=in_scale, out_scale=out_scale,
                  in_zero_point=zin, out_zero_point=zout)
    layer = fxbn.from_batchnorm(**params, in_dtype=in_dtype, out_dtype=out_dtype, rounding="half_even")
    return layer, params


def affine_layer(channels, rng, in_dtype="int32", out_dtype="int8", in_bits=None):
    """int32 accumulator -> int8: a log-uniform in [1e-4, 1e-2], b uniform in [-50, 50].  in_bits: the declared
    accumulator range is [-2^(in_bits-1), 2^(in_bits-1)) (a real layer's, see ADD_BITS), else the whole int32."""
    a = 10.0 ** rng.uniform(-4, -2, channels)
    b = rng.uniform(-50, 50, channels)
    in_range = None
    if in_bits is not None:
        in_range = (np.full(channels, -(1 << (in_bits - 1))), np.full(channels, (1 << (in_bits - 1)) - 1))
    layer = fxbn.from_affine(a, b, in_range=in_range, in_dtype=in_dtype, out_dtype=out_dtype, rounding="half_even")
    return layer, a, b


def float_affine(layer):
    a, b = layer.affine
    return np.asarray(a, np.float64), np.asarray(b, np.float64)


# ---------------------------------------------------------------------------------------------- baselines
def np_float_fn(x, a, b, qmin, qmax, out_dtype, ftype, caxis):
    shape = [1] * x.ndim
    shape[caxis] = -1
    af = a.astype(ftype).reshape(shape)
    bf = b.astype(ftype).reshape(shape)

    def run():
        t = x.astype(ftype)
        t *= af
        t += bf
        np.rint(t, out=t)
        np.clip(t, qmin, qmax, out=t)
        return t.astype(out_dtype)
    return run


def np_int_fn(x, layer, caxis):
    shape = [1] * x.ndim
    shape[caxis] = -1
    A = layer.multiplier.reshape(shape)
    B = layer.bias.reshape(shape)
    S = layer.shift.reshape(shape)
    qmin, qmax = layer.out_range

    def run():
        t = x.astype(np.int64)
        t *= A
        t += B
        t >>= S
        np.clip(t, qmin, qmax, out=t)
        return t.astype(layer.out_dtype)
    return run


def copy_fn(src, dst, threads):
    if threads == 1:
        return lambda: np.copyto(dst, src)
    s = src.reshape(-1)
    d = dst.reshape(-1)
    half = s.size // 2

    def run():
        th = threading.Thread(target=np.copyto, args=(d[half:], s[half:]))
        th.start()
        np.copyto(d[:half], s[:half])
        th.join()
    return run


def torch_fn(x_u8, params, threads, channels_last):
    """torch.ops.quantized.batch_norm2d on the same uint8 bytes (NCHW array x_u8; channels_last memory format)."""
    torch.set_num_threads(threads)
    t = torch.from_numpy(x_u8)
    if channels_last:
        t = t.contiguous(memory_format=torch.channels_last)
    qx = torch._make_per_tensor_quantized_tensor(t, params["in_scale"], params["in_zero_point"])
    w = torch.tensor(params["gamma"], dtype=torch.float32)
    b = torch.tensor(params["beta"], dtype=torch.float32)
    m = torch.tensor(params["mean"], dtype=torch.float32)
    v = torch.tensor(params["var"], dtype=torch.float32)
    op = torch.ops.quantized.batch_norm2d
    eps, os_, oz = float(params["eps"]), float(params["out_scale"]), int(params["out_zero_point"])
    return (lambda: op(qx, w, b, m, v, eps, os_, oz)), qx


# ---------------------------------------------------------------------------------------------- environment
def environment():
    env = {
        "date_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "python": sys.version.split()[0],
        "numpy": np.__version__,
        "torch": torch.__version__ if torch is not None else None,
        "platform": platform.platform(),
        "cpu": "?",
        "cores": os.cpu_count(),
        "OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE"),
        "OPENBLAS_L2_SIZE": os.environ.get("OPENBLAS_L2_SIZE"),
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
        "loadavg_at_start": os.getloadavg(),
    }
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    env["cpu"] = line.split(":", 1)[1].strip()
                    break
        flags = open("/proc/cpuinfo").read()
        env["avx512"] = " avx512bw " in flags
    except OSError:
        pass
    try:
        env["gcc"] = subprocess.run(["gcc", "--version"], capture_output=True, text=True).stdout.splitlines()[0]
    except (OSError, IndexError):
        env["gcc"] = None
    try:
        env["fxbn_commit"] = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                                            capture_output=True, text=True).stdout.strip()
    except OSError:
        env["fxbn_commit"] = None
    # Which numpy SIMD kernels are in use (the numpy baselines are elementwise ufuncs, not BLAS).
    try:
        from numpy._core._multiarray_umath import __cpu_baseline__, __cpu_dispatch__, __cpu_features__
        env["numpy_cpu_baseline"] = list(__cpu_baseline__)
        env["numpy_cpu_dispatch_active"] = [f for f in __cpu_dispatch__ if __cpu_features__.get(f)]
    except ImportError:
        pass
    if hasattr(_core, "kernel_isa"):
        env["fxbn_kernel"] = _core.kernel_isa()
    return env


# ---------------------------------------------------------------------------------------------- the cases
# "late": ResNet-50's last stage (2048 channels at 7 x 7), NCHW rows shorter than a SIMD block (periodic tables);
# its rows are the int32 ones only
SHAPES = {"small": (1, 64, 56, 56), "late": (1, 2048, 7, 7), "large": (32, 64, 56, 56)}
LARGE_WARM = 8


def kernel_cases(shapes, threads_list, repeats, use_torch, log, cases=None):
    rng = np.random.default_rng(2026)
    rows = []
    group = 0
    scrub = Scrub() if "large" in shapes else None
    if scrub is not None:
        print(f"large tensors: a {scrub.nbytes >> 20} MB read-only sweep and {LARGE_WARM} untimed calls before every "
              "sample (see Scrub)")
    configs = [
        ("uint8->uint8", "uint8", "uint8"),
        ("int8->int8", "int8", "int8"),
        ("int32->int8", "int32", "int8"),
        ("int32->int8 +-2^23", "int32", "int8"),
        ("int32->int8 +-2^16", "int32", "int8"),   # ResNet-50's narrowest layer accumulator (17 bits)
        ("int32->int8 +-2^25", "int32", "int8"),   # and its widest (26 bits)
        (R50_CASE, "int32", "int8"),               # a real layer: per-channel ranges (see R50_BN)
        ("int16->int16", "int16", "int16"),
    ]
    if cases:
        configs = [cfg for cfg in configs if cfg[0] in cases]
    for size_name, shape in shapes.items():
        n, c, h, w = shape
        for name, tin, tout in configs:
            if size_name == "large" and (name == R50_CASE or _in_bits(name) not in (None, ADD_BITS)):
                continue  # the 17- and 26-bit rows and the real layer: small tensors only
            if size_name == "late" and (tin != "int32" or name == R50_CASE):
                continue
            if name == R50_CASE:
                built = resnet50_layer()
                if built is None:
                    print(f"{name}: skipped ({R50_BN} needs ../shared/data/imagenet/resnet50.npz)")
                    continue
                layer, a, b = built
                params = None
                lo, hi = (layer.in_range[:, k].reshape(1, c, 1, 1) for k in (0, 1))
                # a conv accumulator's spread in each channel's own bound (sigma a 16th of its width), clipped to it
                x_nchw = np.clip(np.rint(rng.normal(0, 1, shape) * ((hi - lo) / 16)), lo, hi).astype(np.int32)
            elif tin == "int32":
                layer, a, b = affine_layer(c, rng, in_bits=_in_bits(name))
                params = None
            else:
                layer, params = bn_layer(c, tin, tout, rng)
                a, b = float_affine(layer)
            info = np.iinfo(tin)
            if name == R50_CASE:
                pass
            elif tin == "int32" and _in_bits(name):
                # the declared +-2^(bits-1) range, used: a conv accumulator's spread (sigma 2^(bits-4)), clipped to it
                lim = 1 << (_in_bits(name) - 1)
                x_nchw = np.clip(rng.normal(0, lim >> 3, shape), -lim, lim - 1).astype(np.int32)
            elif tin == "int32":
                # conv accumulators: mostly moderate, a few large
                x_nchw = np.clip(rng.normal(0, 4000, shape), info.min, info.max).astype(np.int32)
            else:
                x_nchw = rng.integers(info.min, int(info.max) + 1, shape, dtype=tin)
            layouts = [("NCHW", x_nchw, 1), ("NHWC", np.ascontiguousarray(x_nchw.transpose(0, 2, 3, 1)), -1)]
            if tin in ("int16", "int32") and size_name == "large":
                layouts = layouts[:1] + layouts[1:]  # both layouts for every dtype
            for layout, x, axis in layouts:
                y = np.empty(x.shape, layer.out_dtype)
                expect = layer.apply(x, axis=axis)
                in_bytes, out_bytes = x.nbytes, y.nbytes
                base = dict(case=name, size=size_name, shape=list(x.shape), layout=layout,
                            acc32=bool(np.all(layer.accumulator_bits <= 32)), in_bytes=in_bytes,
                            out_bytes=out_bytes)
                caxis = axis % x.ndim
                qmin, qmax = layer.out_range
                np_int = np_int_fn(x, layer, caxis)
                assert np.array_equal(np_int(), expect), "numpy integer path disagrees with fxbn"
                for t in threads_list:
                    fns = {}
                    fns["fxbn"] = lambda t=t: layer.apply(x, axis=axis, out=y, threads=t)
                    fns["fxbn_alloc"] = lambda t=t: layer.apply(x, axis=axis, threads=t)
                    outer, _, inner = layer._shape3(x, axis)[2]
                    acc32 = bool(np.all(layer.accumulator_bits <= 32))
                    kernel = _core.Kernel(layer.multiplier, layer.bias, layer._shift32, layer._lo, layer._hi,
                                          layer.out_range[0], layer.out_range[1], acc32)
                    fns["fxbn_kernel"] = lambda t=t, k=kernel: k.run(  # the kernel alone, no Python API layer
                        x, y, outer, inner, t)
                    dst = np.empty_like(x)
                    fns["copy"] = copy_fn(x, dst, t)
                    extra = {}
                    if use_torch and tin == "uint8" and tout == "uint8":
                        fn, _ = torch_fn(x_nchw, params, t, channels_last=(layout == "NHWC"))
                        out = fn()
                        ours = expect if layout == "NCHW" else expect.transpose(0, 3, 1, 2)
                        diff = out.int_repr().numpy().astype(np.int16) - ours.astype(np.int16)
                        extra["torch"] = dict(max_abs_diff_vs_exact=int(np.abs(diff).max()),
                                              frac_diff_vs_exact=float(np.mean(diff != 0)))
                        fns["torch"] = fn
                    if t == threads_list[0]:  # NumPy is single-threaded: measured once per case, with the first t
                        fns["np_float"] = np_float_fn(x, a, b, qmin, qmax, layer.out_dtype, np.float32, caxis)
                        fns["np_float64"] = np_float_fn(x, a, b, qmin, qmax, layer.out_dtype, np.float64, caxis)
                        fns["np_int"] = np_int
                    settle()
                    large = size_name == "large"
                    res = measure_group(fns, repeats, pause=_pause, scrub=scrub if large else None,
                                        warm=LARGE_WARM if large else 1)
                    settle()
                    assert np.array_equal(y, expect)
                    group += 1
                    for impl, m in res.items():
                        m["group"] = group
                        moved = 2 * in_bytes if impl == "copy" else in_bytes + out_bytes
                        thr = 1 if impl.startswith("np_") else t
                        rows.append(dict(base, impl=impl, threads=thr, **m, gbps=moved / m["median_s"] / 1e9,
                                         **extra.get(impl, {})))
                        log(rows[-1])
    return rows


def resnet50_set(rng):
    layers = []
    for c in RESNET50_BN:
        a = 10.0 ** rng.uniform(-4, -2, c)
        b = rng.uniform(-50, 50, c)
        layers.append((a, b))
    return layers


def solver_cases(repeats, log):
    rng = np.random.default_rng(50)
    params = resnet50_set(rng)

    def solve():
        return [fxbn.from_affine(a, b, in_dtype="int32", out_dtype="int8", rounding="half_even") for a, b in params]

    layers = solve()
    rows = []
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        solve()
        samples.append(time.perf_counter() - t0)
    rows.append(dict(impl="solver", channels=sum(RESNET50_BN), layers=len(params),
                     median_s=statistics.median(samples), min_s=min(samples), max_s=max(samples), repeats=repeats))
    log(rows[-1])

    certify = None
    try:
        from verify import breakpoints as vb  # built by another engineer; time its certificate when present
        for name in ("certify_layer", "certificate", "certify"):
            if hasattr(vb, name):
                certify = (f"verify.breakpoints.{name}", getattr(vb, name))
                break
    except ImportError:
        pass

    def verify_core():
        ok = True
        for layer in layers:
            layer._breakpoints.pop("core", None)  # no cache: recompute the reference every time
            d, T = layer.reference_breakpoints(engine="core")
            qmin, qmax = layer.out_range
            Tf, good = _core.breakpoints_fixed_point(layer.multiplier, layer.bias, layer._shift32, d, layer._lo,
                                                     layer._hi, qmin, qmax)
            ok &= bool(np.all(good)) and bool(np.array_equal(T, Tf))
        return ok

    variants = [("verifier(core breakpoints + fixed-point breakpoints)", verify_core)]
    if certify is not None:
        name, cert = certify

        def verify_certificate(cert=cert):
            ok = True
            for layer in layers:
                layer._breakpoints.pop("core", None)  # no cache: recompute the reference every time
                ok &= all(ch["proved"] for ch in cert(layer))
            return ok
        variants.append((name + " (reference breakpoints + certificate)", verify_certificate))
    for label, fn in variants:
        try:
            result = fn()
        except Exception as e:  # a verify/ API we guessed wrong: report, do not fail the benchmark
            rows.append(dict(impl=label, error=repr(e)))
            log(rows[-1])
            continue
        samples = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            samples.append(time.perf_counter() - t0)
        rows.append(dict(impl=label, channels=sum(RESNET50_BN), layers=len(layers), verified=result is True,
                         median_s=statistics.median(samples), min_s=min(samples), max_s=max(samples),
                         repeats=repeats))
        log(rows[-1])
    return rows


# ---------------------------------------------------------------------------------------------- report
def find(rows, **kw):
    for r in rows:
        if all(r.get(k) == v for k, v in kw.items()):
            return r
    return None


def summarize(rows, solver_rows, threads_list):
    lines, targets = [], []
    hdr = (f"{'case':<20}{'size':<7}{'layout':<7}{'thr':>4}{'fxbn us':>10}{'GB/s':>7}{'copy%':>7}{'alloc us':>10}"
           f"{'kern us':>9}{'torch us':>10}{'x torch':>8}{'npf32 us':>10}{'x npf32':>8}{'npf64 x':>8}{'npint x':>8}")
    lines.append(hdr)
    keys = []
    for r in rows:
        k = (r["case"], r["size"], r["layout"])
        if k not in keys:
            keys.append(k)
    for case, size, layout in keys:
        sel = dict(case=case, size=size, layout=layout)
        npf = find(rows, impl="np_float", **sel)
        npf64 = find(rows, impl="np_float64", **sel)
        npi = find(rows, impl="np_int", **sel)
        for t in threads_list:
            f = find(rows, impl="fxbn", threads=t, **sel)
            fa = find(rows, impl="fxbn_alloc", threads=t, **sel)
            fk = find(rows, impl="fxbn_kernel", threads=t, **sel)
            cp = find(rows, impl="copy", threads=t, **sel)
            tr = find(rows, impl="torch", threads=t, **sel)
            fm = f["median_s"]
            # copy moves 2 * in_bytes, fxbn in + out bytes: bandwidth ratio = time ratio * bytes ratio
            copy_pct = 100 * ratio(cp, f) * (f["in_bytes"] + f["out_bytes"]) / (2 * f["in_bytes"])
            x_torch = ratio(tr, f) if tr else None
            x_npf = ratio(npf, f)
            lines.append(f"{case:<20}{size:<7}{layout:<7}{t:>4}{fm * 1e6:>10.1f}{f['gbps']:>7.2f}{copy_pct:>6.0f}%"
                         f"{fa['median_s'] * 1e6:>10.1f}{fk['median_s'] * 1e6:>9.1f}"
                         f"{(tr['median_s'] * 1e6 if tr else float('nan')):>10.1f}"
                         f"{(x_torch if x_torch else float('nan')):>8.2f}{npf['median_s'] * 1e6:>10.1f}{x_npf:>8.2f}"
                         f"{ratio(npf64, f):>8.2f}{ratio(npi, f):>8.2f}")
            if case == "uint8->uint8" and layout == "NCHW":
                targets.append(dict(target=f"fxbn >= 3x torch, uint8 NCHW {size} t={t}",
                                    value=x_torch, met=(x_torch >= 3) if x_torch else None))
            if case == "uint8->uint8" and layout == "NHWC":
                targets.append(dict(target=f"fxbn >= 3x torch, uint8 NHWC {size} t={t} (issue 14)",
                                    value=x_torch, met=(x_torch >= 3) if x_torch else None))
            # issue 14's int32 targets name no layout: both are checked
            if case.startswith("int32->int8 +-2^") or case == R50_CASE:
                targets.append(dict(target=f"fxbn >= 8x numpy float32 path, {case} {layout} {size} t={t} "
                                    "(issue 14)", value=x_npf, met=x_npf >= 8))
            if case == "int32->int8":
                targets.append(dict(target=f"fxbn >= 5x numpy float32 path, int32->int8 full range {layout} {size} "
                                    f"t={t} (issue 14)", value=x_npf, met=x_npf >= 5))
            if case == "int32->int8" and layout == "NCHW":
                targets.append(dict(target=f"fxbn >= 8x numpy float32 path, int32->int8 {size} t={t}", value=x_npf,
                                    met=x_npf >= 8))
                x64 = ratio(npf64, f)
                targets.append(dict(target=f"fxbn >= 8x numpy float64 path (exact for int32), int32->int8 {size} t={t}",
                                    value=x64, met=x64 >= 8))
            if size == "large":
                targets.append(dict(target=f"fxbn >= 60% of copy bandwidth, {case} {layout} {size} t={t}",
                                    value=copy_pct / 100, met=copy_pct >= 60))
    for r in solver_rows:
        if "median_s" not in r:
            continue
        limit = 0.5 if r["impl"] == "solver" else 1.0
        targets.append(dict(target=f"{r['impl']} < {limit} s (ResNet-50 set, 26,560 channels)", value=r["median_s"],
                            met=r["median_s"] < limit))
    return lines, targets


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small shape only, fewer repeats (smoke test)")
    ap.add_argument("--repeats", type=int, default=None, help="samples per row (default 21; 5 with --quick)")
    ap.add_argument("--cases", default=None,
                    help="comma-separated rows to run (e.g. uint8->uint8,int8->int8); default all")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--json", default=str(ROOT / "benchmarks" / "results" / "bench.json"))
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--no-solver", action="store_true")
    ap.add_argument("--verbose", "-v", action="store_true")
    ap.add_argument("--isa", default=None, help="kernel instruction set (x86-64-v4+vbmi+vnni, x86-64-v4, avx2, baseline)")
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                    help="cpu: time the kernel rows in process CPU time (a loaded machine; use with --threads 1)")
    args = ap.parse_args()
    global CLOCK
    if args.clock == "cpu":
        if args.threads != "1":
            ap.error("--clock cpu counts every thread's CPU time: use it with --threads 1")
        CLOCK = time.process_time
    threads_list = [int(t) for t in args.threads.split(",")]
    shapes = {"small": SHAPES["small"]} if args.quick else SHAPES
    repeats = args.repeats if args.repeats is not None else (5 if args.quick else 21)
    use_torch = torch is not None and not args.no_torch
    notes = []
    if torch is None:
        notes.append("torch not installed: torch rows skipped (pip install torch==2.13.0)")

    def log(row):
        if args.verbose:
            print({k: (round(v, 7) if isinstance(v, float) else v) for k, v in row.items()}, flush=True)

    if args.isa:
        _core.kernel_isa(args.isa)
    env = environment()
    env["isa_requested"] = args.isa or os.environ.get("FXBN_ISA")
    env["clock"] = args.clock
    print(f"fxbn benchmark  {env['date_utc']}  {env['cpu']}  cores={env['cores']}  python {env['python']}  "
          f"numpy {env['numpy']}  torch {env['torch']}  {env.get('gcc')}  clock={args.clock}")
    if env.get("fxbn_kernel"):
        print(f"fxbn kernel ISA body: {env['fxbn_kernel']}  (CPU: {env['cpu']}, AVX-512 in the CPU: "
              f"{'yes' if env.get('avx512') else 'no'}; FXBN_ISA={os.environ.get('FXBN_ISA')}, --isa={args.isa})")
    rows = kernel_cases(shapes, threads_list, repeats, use_torch, log,
                        cases=args.cases.split(",") if args.cases else None)
    solver_rows = [] if args.no_solver else solver_cases(3 if args.quick else 7, log)
    env["loadavg_at_end"] = os.getloadavg()
    lines, targets = summarize(rows, solver_rows, threads_list)
    print(f"load average (1 min) at start {env['loadavg_at_start'][0]:.2f}, at end {env['loadavg_at_end'][0]:.2f} "
          f"on {env['cores']} cores (the machine is shared: 2-thread rows need an idle second core)")
    print("\n".join(lines))
    print()
    for r in solver_rows:
        if "median_s" in r:
            print(f"{r['impl']:<58} median {r['median_s']:.3f} s  (min {r['min_s']:.3f}, max {r['max_s']:.3f})")
        else:
            print(f"{r['impl']:<58} error {r['error']}")
    print()
    for t in targets:
        v = t["value"]
        mark = "n/a " if t["met"] is None else ("MET " if t["met"] else "MISS")
        print(f"[{mark}] {t['target']}: {'n/a' if v is None else format(v, '.3g')}")
    for n in notes:
        print("note:", n)
    out = pathlib.Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"environment": env, "command": " ".join(sys.argv), "notes": notes, "kernel": rows,
                               "solver": solver_rows, "targets": targets}, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
