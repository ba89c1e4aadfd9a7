"""Float ONNX model + calibration images -> integer-only ONNX model (``python -m fxbn.onnx quantize`` / ``check``).

:func:`quantize_model` imports the model (:func:`fxbn.onnx.importer.import_onnx`), calibrates and quantizes the
:class:`fxbn.network.Graph` and exports it (:func:`fxbn.onnx.network.export_network`); the integer model records
what ``check`` needs to rebuild the library's integer network (:func:`network_record` /
:func:`network_from_record`: the float model's path and SHA-256, the normalisation, the image size, the rounding and
every calibrated activation quantization; quantization is deterministic from these). :func:`check_network` runs the
integer model in onnxruntime against ``Graph.forward_int`` and the exact reference.
"""
import hashlib
import json
import os
import re
import sys

import numpy as np

RECORD_KEY = "fxbn.network"


# ---------------------------------------------------------------------------------------------- images
def load_images(path, size, limit=None):
    """uint8 NHWC pixels (N, size, size, C) from a .npy / .npz array or a directory of image files.

    .npy: one uint8 array (N, H, W, C); .npz: its only array (or the one named ``pixels``); a directory: image files
    (class folders, a labels.txt or a flat directory, as ``python -m fxbn.calibrate``), decoded with Pillow and
    resized to size x size when they differ. Raises ValueError naming the file.
    """
    path = str(path)
    if os.path.isdir(path):
        from fxbn import calibrate as fc

        try:
            files = [f for f, _ in fc.list_images(path)][:limit]
        except ValueError as exc:
            raise ValueError(str(exc)) from None
        import importlib.util

        if importlib.util.find_spec("PIL") is None:
            raise ValueError(f"{path}: decoding image files needs Pillow (pip install pillow), or give the pixels "
                             "as a .npy of uint8 (N, H, W, 3)")
        try:
            pixels = np.stack([fc.load_image(f, size=(size, size)) for f in files])
        except (OSError, ValueError) as exc:
            raise ValueError(f"{path}: cannot decode an image ({exc})") from None
    elif os.path.isfile(path) and path.lower().endswith((".npy", ".npz")):
        try:
            z = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise ValueError(f"{path}: cannot read ({exc})") from None
        if isinstance(z, np.lib.npyio.NpzFile):
            with z:
                keys = z.files
                key = "pixels" if "pixels" in keys else (keys[0] if len(keys) == 1 else None)
                if key is None:
                    raise ValueError(f"{path}: several arrays ({', '.join(keys[:5])}) and none named 'pixels'")
                try:
                    pixels = z[key]
                except ValueError as exc:
                    raise ValueError(f"{path}: {exc}") from None
        else:
            pixels = z
        pixels = pixels[:limit] if pixels.ndim == 4 else pixels
    elif os.path.exists(path):
        raise ValueError(f"{path}: expected a directory of images or a .npy/.npz of uint8 pixels")
    else:
        raise ValueError(f"{path}: no such file or directory")
    if pixels.dtype != np.uint8:
        raise ValueError(f"{path}: pixels must be uint8, got {pixels.dtype}")
    if pixels.ndim == 3:
        pixels = pixels[None]
    if pixels.ndim != 4 or pixels.shape[1:3] != (size, size) or pixels.shape[0] == 0:
        raise ValueError(f"{path}: pixels of shape {pixels.shape}, expected (N, {size}, {size}, C) with N >= 1")
    return np.ascontiguousarray(pixels)


def progress(items, total, label, stream=None, width=30):
    """Yield items while drawing a text progress bar on stderr."""
    stream = stream or sys.stderr
    for k, item in enumerate(items, start=1):
        yield item
        done = int(width * k / total)
        stream.write(f"\r{label} [{'#' * done}{'.' * (width - done)}] {k}/{total}")
        stream.flush()
    stream.write("\n")
    stream.flush()


# ---------------------------------------------------------------------------------------------- the record
def _sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def network_record(graph, source, size, rounding):
    """What rebuilds the quantized graph: the float model (path, SHA-256), normalisation, size, rounding, and
    every calibrated activation quantization (JSON floats round-trip exactly)."""
    acts = {name: {"scale": float(a.scale), "zero_point": int(a.zero_point), "dtype": a.dtype, "qmin": int(a.qmin),
                   "qmax": int(a.qmax)} for name, a in graph.acts.items()}
    return {"format": RECORD_KEY, "version": 1, "source": os.path.abspath(str(source)), "sha256": _sha256(source),
            "input_mean": [float(v) for v in graph.input_mean], "input_std": [float(v) for v in graph.input_std],
            "size": int(size), "rounding": rounding, "acts": acts}


def read_record(model, where):
    props = {p.key: p.value for p in model.metadata_props}
    if RECORD_KEY not in props:
        return None
    try:
        rec = json.loads(props[RECORD_KEY])
    except ValueError as exc:
        raise ValueError(f"{where}: metadata {RECORD_KEY} is not JSON ({exc})") from None
    if not isinstance(rec, dict) or rec.get("format") != RECORD_KEY or rec.get("version") != 1:
        raise ValueError(f"{where}: metadata {RECORD_KEY} has an unknown format")
    return rec


def network_from_record(rec, source=None):
    """The quantized Graph a record describes (the float model re-imported, its SHA-256 checked)."""
    from fxbn import importers
    from fxbn.onnx.importer import import_onnx

    source = source or rec["source"]
    if not os.path.isfile(source):
        raise ValueError(f"the float model {source} the integer model was quantized from is missing (give --model)")
    if _sha256(source) != rec["sha256"]:
        raise ValueError(f"{source}: not the float model the integer model was quantized from (SHA-256 differs)")
    graph = import_onnx(source, rec["input_mean"], rec["input_std"], size=rec["size"])
    try:
        graph.acts = {k: importers.ActivationQuant(v["scale"], v["zero_point"], v["dtype"], v["qmin"], v["qmax"])
                      for k, v in rec["acts"].items()}
    except (KeyError, TypeError) as exc:
        raise ValueError(f"metadata {RECORD_KEY}: malformed activation entry ({exc})") from None
    from fxbn.network import POINTS

    missing = [n.name for n in graph.nodes if n.op in POINTS and n.name not in graph.acts]
    if missing:
        raise ValueError(f"metadata {RECORD_KEY}: no activation quantization for {', '.join(missing[:3])}")
    graph.quantize(rounding=rec["rounding"])
    return graph


# ---------------------------------------------------------------------------------------------- quantize / check
def quantize_model(model_path, pixels, input_mean, input_std, size, batch=100, method="minmax", rounding="half_up",
                   progress_stream=None):
    """(quantized Graph, integer-only onnx.ModelProto with the record in its metadata)."""
    import onnx

    from fxbn.onnx.importer import import_onnx
    from fxbn.onnx.network import export_network

    graph = import_onnx(model_path, input_mean, input_std, size=size)
    batches = [pixels[i:i + batch] for i in range(0, len(pixels), batch)]
    if progress_stream is not False:
        batches = progress(batches, len(batches), "calibrating", progress_stream)
    graph.calibrate(batches, method=method)
    graph.quantize(rounding=rounding)
    model = export_network(graph, size)
    onnx.helper.set_model_props(model, {**{p.key: p.value for p in model.metadata_props},
                                        RECORD_KEY: json.dumps(network_record(graph, model_path, size, rounding))})
    return graph, model


def _file_name(name, used):
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "layer"
    out, k = stem, 1
    while out in used:
        k += 1
        out = f"{stem}_{k}"
    used.add(out)
    return out


def save_layers(graph, directory):
    """Every exact layer of a quantized graph as DIR/<node>.json (input layer, BN layers — LeakyReLU: <node> and
    <node>.leaky —, FixedPointAdd; average pooling: <node>.n<N> per window size N), written as one set (all files
    or, on a failure, none changed: fxbn.atomic.write_files); returns [(node, path)]."""
    from fxbn import io as _io
    from fxbn.atomic import write_files

    os.makedirs(directory, exist_ok=True)
    used, out, contents = set(), [], {}
    for node in graph.nodes:
        q = graph.q.get(node.name, {})
        layers = q.get("layers") or ([q["layer"]] if "layer" in q else [])
        for k, layer in enumerate(layers):
            suffix = f".n{layer.op['window']}" if node.op == "avgpool" else (".leaky" if k else "")
            path = os.path.join(directory, _file_name(node.name + suffix, used) + ".json")
            contents[path] = _io.record_bytes(layer.to_dict(), path)
            out.append((node.name, path))
    write_files(contents)
    return out


def check_network(graph, model, pixels, batch=100, threads=1, reference=False):
    """Images whose integer logits differ: onnxruntime (optimizations on / off) vs Graph.forward_int (fxbn), and
    with reference=True fxbn vs the exact reference (Graph.forward_pair; slow: the residual adds' exact reference
    is tabulated over their whole input box). Returns a dict of counts and the first differing image."""
    import fxbn.onnx as fo

    ours, ref = [], []
    for i in range(0, len(pixels), batch):
        if reference:
            lf, lr, _, _ = graph.forward_pair(pixels[i:i + batch])
            ref.append(lr)
        else:
            lf = graph.forward_int(pixels[i:i + batch])[0]
        ours.append(lf)
    ours = np.concatenate(ours)
    res = {"images": len(pixels),
           "reference": int(np.sum(np.any(ours != np.concatenate(ref), axis=1))) if reference else None}
    for opt in (True, False):
        sess = fo.session(model, optimize=opt, threads=threads)
        got = np.concatenate([sess.run(None, {"pixels": pixels[i:i + batch]})[0]
                              for i in range(0, len(pixels), batch)])
        bad = np.flatnonzero(np.any(got != ours, axis=1))
        res["ORT_ENABLE_ALL" if opt else "ORT_DISABLE_ALL"] = {"mismatches": int(bad.size),
                                                               "first": int(bad[0]) if bad.size else None}
    res["logits"] = ours
    return res
