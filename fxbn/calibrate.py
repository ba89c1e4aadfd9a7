"""Calibrate a model file on a directory of images and build its exact integer BN layers, in one command.

    python -m fxbn.calibrate MODEL IMAGES --input-scale unit --out acts.json [--layers-out DIR]

MODEL is a Keras topology ``X.model.json`` (weights ``X.npz`` beside it, names ``<layer>/<weight>``), a Keras
``X.npz`` with ``X.model.json`` beside it, or a PyTorch state_dict (``.pt``/``.pth``/``.npz``) together with
``--arch package.module:function`` (a callable returning the nn.Module the state_dict belongs to; it is imported,
so use only code you trust). IMAGES is a directory of images, or of class folders (labels = sorted folder names,
as torchvision's ImageFolder), or has a ``labels.txt`` (``<file> <label> ...`` per line): with labels the float
top-1 of the model on these images is printed, so a wrong input scaling shows (e.g. 10% on CIFAR-10).

Input scaling is never guessed (``--input-scale`` is required): the network input is
``(scaled - mean) / std`` per channel with scaled = pixels (``raw``: 0..255), ``pixels / 255`` (``unit``) or
``pixels / 127.5 - 1`` (``symmetric``), then ``--mean``/``--std`` (default 0 / 1), after ``--bgr``. Keras models
take NHWC input, torch models NCHW.

A conv bias is folded into the BN mean in float64 (rounded when inexact, as ``python -m verify`` does: the layer
is then exact for that folded BN). Writes the activations file for ``python -m verify MODEL --activations
acts.json`` (schema: verify/model.py) and prints each layer (conv -> BN or affine, its source, the activation
folded into its clamp or following unfolded) and each BN left out with the reason. Exit 0 when every BN was
imported, 3 when some were left out (the file is still written), 64 on usage errors.
"""
import argparse
import importlib
import json
import os
import pathlib
import sys
import warnings

import numpy as np

from fxbn.atomic import write_file, write_files
from fxbn.io import record_bytes

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".webp")
SCALES = {"raw": lambda p: p, "unit": lambda p: p / np.float32(255), "symmetric": lambda p: p / np.float32(127.5) - 1}


class UsageError(ValueError):
    pass


def list_images(root):
    """[(path, label or None)], from class folders, a labels.txt, or a flat directory (sorted)."""
    root = pathlib.Path(root)
    if not root.is_dir():
        raise UsageError(f"image directory {root} not found")
    classes = sorted(d.name for d in root.iterdir() if d.is_dir())
    if classes:
        out = [(f, label) for label, c in enumerate(classes) for f in sorted((root / c).iterdir())
               if f.suffix.lower() in IMAGE_SUFFIXES]
    elif (root / "labels.txt").is_file():
        out = []
        for line in (root / "labels.txt").read_text().splitlines():
            parts = line.split()
            if len(parts) >= 2:
                out.append((root / parts[0], int(parts[1])))
    else:
        out = [(f, None) for f in sorted(root.iterdir()) if f.suffix.lower() in IMAGE_SUFFIXES]
    if not out:
        raise UsageError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {root}")
    return out


def load_image(path, size=None, resize_shorter=None, crop=None):
    """uint8 RGB (H, W, 3): optional shorter-side resize, centre crop, or resize to exactly `size` (h, w)."""
    from PIL import Image

    with Image.open(path) as im:
        im = im.convert("RGB")
        if resize_shorter:
            w, h = im.size
            r = resize_shorter / min(w, h)
            im = im.resize((max(1, round(w * r)), max(1, round(h * r))), Image.BILINEAR)
        if crop:
            w, h = im.size
            left, top = (w - crop[1]) // 2, (h - crop[0]) // 2
            im = im.crop((left, top, left + crop[1], top + crop[0]))
        if size and im.size != (size[1], size[0]):
            im = im.resize((size[1], size[0]), Image.BILINEAR)
        return np.asarray(im, np.uint8)


def load_model(path, arch=None, input_shape=None):
    """(torch module in eval mode, layout "nhwc"/"nchw", input (h, w) or None) for a model file."""
    path = str(path)
    low = path.lower()
    topology = None
    if low.endswith(".json"):
        topology = path
        weights = (path[: -len(".model.json")] if low.endswith(".model.json") else path[:-5]) + ".npz"
    elif low.endswith(".npz") and os.path.isfile(path[:-4] + ".model.json") and arch is None:
        topology, weights = path[:-4] + ".model.json", path
    if topology is not None:
        from fxbn.keras_torch import keras_to_torch

        if not os.path.isfile(weights):
            raise UsageError(f"{topology}: weights {weights} not found")
        with np.load(weights, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        try:
            module = keras_to_torch(topology, arrays, input_shape)
        except ValueError as e:
            raise UsageError(f"{topology}: {e}") from None
        return module, "nhwc", module.input_chw
    if arch is None:
        raise UsageError(f"{path}: a PyTorch state_dict needs --arch package.module:function (the architecture), "
                         "or give a Keras topology X.model.json")
    import torch

    mod_name, _, fn = arch.partition(":")
    if not fn:
        raise UsageError(f"--arch {arch!r}: expected package.module:function")
    try:
        factory = getattr(importlib.import_module(mod_name), fn)
    except (ImportError, AttributeError) as e:
        raise UsageError(f"--arch {arch!r}: {e}") from None
    module = factory()
    if low.endswith(".npz"):
        with np.load(path, allow_pickle=False) as z:
            state = {k: torch.from_numpy(z[k]) for k in z.files}
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
        if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
            state = state["state_dict"]
        state = {k[len("module."):] if k.startswith("module.") else k: v for k, v in state.items()}
    result = module.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys if not k.endswith("num_batches_tracked")]
    if missing or result.unexpected_keys:
        raise UsageError(f"{path} does not fit --arch {arch}: missing {missing[:5]}, unexpected "
                         f"{list(result.unexpected_keys)[:5]}")
    return module.eval(), "nchw", None


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m fxbn.calibrate", description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("model")
    p.add_argument("images")
    p.add_argument("--input-scale", required=True, choices=sorted(SCALES),
                   help="pixels as the network expects them: raw 0..255, unit /255, symmetric /127.5 - 1")
    p.add_argument("--mean", type=float, nargs="+", default=[0.0], help="subtracted after scaling (per channel)")
    p.add_argument("--std", type=float, nargs="+", default=[1.0], help="divided after --mean (per channel)")
    p.add_argument("--bgr", action="store_true", help="flip RGB to BGR before scaling (caffe-style models)")
    p.add_argument("--size", type=int, nargs=2, metavar=("H", "W"), help="resize every image to H x W")
    p.add_argument("--resize-shorter", type=int, help="resize the shorter side first (then --crop)")
    p.add_argument("--crop", type=int, nargs=2, metavar=("H", "W"), help="centre crop")
    p.add_argument("--arch", help="torch state_dict: package.module:function building the nn.Module")
    p.add_argument("--limit", type=int, default=200, help="calibration images (default 200)")
    p.add_argument("--batch", type=int, default=50)
    p.add_argument("--method", default="minmax", choices=["minmax", "percentile"])
    p.add_argument("--percentile", type=float, default=99.99)
    p.add_argument("--rounding", default="half_up", choices=["half_even", "half_up", "half_away", "floor"])
    p.add_argument("--out", "-o", type=pathlib.Path, required=True, help="activations JSON to write")
    p.add_argument("--layers-out", type=pathlib.Path, help="also save every built layer as DIR/<bn>.json")
    args = p.parse_args(argv)
    try:
        return run(args)
    except UsageError as e:
        print(f"python -m fxbn.calibrate: error: {e}", file=sys.stderr)
        return 64


def run(args):
    import torch

    from fxbn import importers

    if args.limit < 1 or args.batch < 1:
        raise UsageError("--limit and --batch must be >= 1")
    module, layout, chw = load_model(args.model, args.arch)
    size = tuple(args.size) if args.size else None
    if size is None and chw is not None:
        c, h, w = chw
        if not (args.crop or args.resize_shorter):
            size = (h, w)
    files = list_images(args.images)[: args.limit]
    pixels = np.stack([load_image(f, size, args.resize_shorter, tuple(args.crop) if args.crop else None)
                       for f, _ in files])
    if args.bgr:
        pixels = pixels[..., ::-1]
    x = SCALES[args.input_scale](pixels.astype(np.float32))
    mean, std = np.float32(args.mean), np.float32(args.std)
    if np.any(std == 0):
        raise UsageError("--std must not be 0")
    x = ((x - mean) / std).astype(np.float32)
    if layout == "nchw":
        x = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    batches = [torch.from_numpy(x[i:i + args.batch]) for i in range(0, len(x), args.batch)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")         # the report is printed below
        try:
            cal = importers.calibrate_torch(module, batches, method=args.method, percentile=args.percentile,
                                            rounding=args.rounding, exact_bias_fold=False)
        except ValueError as e:
            raise UsageError(str(e)) from None
    labels = [lab for _, lab in files]
    desc = {"images": str(args.images), "count": len(files), "input_scale": args.input_scale,
            "mean": list(map(float, args.mean)), "std": list(map(float, args.std)), "bgr": bool(args.bgr)}
    if all(lab is not None for lab in labels):
        with torch.no_grad():
            logits = torch.cat([module(b) for b in batches]).numpy()
        top1 = float(np.mean(np.argmax(logits, axis=1) == np.asarray(labels)))
        desc["float_top1"] = top1
        print(f"float top-1 on {len(files)} labelled images: {100 * top1:.2f}% (a far lower figure than the "
              "model's usual accuracy means the input scaling is wrong)")
    acts = cal.activations_json(model=args.model, rounding=args.rounding, calibration=desc)
    write_file(args.out, json.dumps(acts, indent=1) + "\n")         # all or nothing
    print(cal.layers.summary())
    if args.layers_out:
        args.layers_out.mkdir(parents=True, exist_ok=True)
        paths = {str(args.layers_out / f"{name}.json"): info.layer for name, info in cal.layers.items()}
        write_files({p: record_bytes(layer.to_dict(), p) for p, layer in paths.items()})   # the set, all or nothing
    print(f"wrote {args.out}: {len(cal.layers)} BN layers", file=sys.stderr)
    return 3 if cal.layers.skipped or not cal.layers.layers else 0


if __name__ == "__main__":
    sys.exit(main())
