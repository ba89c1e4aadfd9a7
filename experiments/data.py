"""Image loading from the shared data directory (by path; never copied). Pixels are uint8 NHWC RGB."""
import os
import pathlib

import numpy as np

CIFAR_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def data_dir():
    """FXBN_DATA or ../shared/data relative to the repository."""
    return pathlib.Path(os.environ.get("FXBN_DATA", pathlib.Path(__file__).resolve().parents[1] / ".." / "shared"
                                       / "data")).resolve()


def read_png_rgb8(path):
    """Decode an 8-bit RGB, non-interlaced PNG with zlib only (so the lossless tests need no Pillow)."""
    import struct
    import zlib

    raw = pathlib.Path(path).read_bytes()
    if raw[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError(f"{path}: not a PNG")
    pos, idat, header = 8, [], None
    while pos < len(raw):
        length, kind = struct.unpack(">I4s", raw[pos:pos + 8])
        body = raw[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat.append(body)
        pos += 12 + length
    width, height, depth, color, _, _, interlace = header
    if (depth, color, interlace) != (8, 2, 0):
        raise ValueError(f"{path}: only 8-bit RGB non-interlaced PNGs are supported")
    stride = 3 * width
    rows = np.frombuffer(zlib.decompress(b"".join(idat)), np.uint8).reshape(height, stride + 1)
    out = np.zeros((height, stride), np.int32)
    for r in range(height):
        f, line = rows[r, 0], rows[r, 1:].astype(np.int32)
        prev = out[r - 1] if r else np.zeros(stride, np.int32)
        if f == 0:
            out[r] = line
        elif f == 2:
            out[r] = (line + prev) & 255
        else:  # sub, average, paeth depend on the pixel to the left: byte by byte
            cur = np.zeros(stride, np.int32)
            for i in range(stride):
                left = cur[i - 3] if i >= 3 else 0
                up, ul = prev[i], (prev[i - 3] if i >= 3 else 0)
                if f == 1:
                    pred = left
                elif f == 3:
                    pred = (left + up) // 2
                else:
                    p = left + up - ul
                    pa, pb, pc = abs(p - left), abs(p - up), abs(p - ul)
                    pred = left if pa <= pb and pa <= pc else (up if pb <= pc else ul)
                cur[i] = (line[i] + pred) & 255
            out[r] = cur
    return out.astype(np.uint8).reshape(height, width, 3)


def _read(path, size=None, crop=None):
    if str(path).endswith(".png") and size is None:
        return read_png_rgb8(path)
    from PIL import Image

    with Image.open(path) as im:
        im = im.convert("RGB")
        if size is not None:
            w, h = im.size
            if crop:  # shorter side to `size`, centre crop `crop`
                scale = size / min(w, h)
                im = im.resize((max(crop, round(w * scale)), max(crop, round(h * scale))), Image.BILINEAR)
                w, h = im.size
                left, top = (w - crop) // 2, (h - crop) // 2
                im = im.crop((left, top, left + crop, top + crop))
            else:
                im = im.resize((size, size), Image.BILINEAR)
        return np.asarray(im, np.uint8)


def cifar_test(root=None, limit_per_class=None):
    """(pixels (N, 32, 32, 3) uint8, labels (N,)) of the CIFAR-10 JPEG test set, class-major order."""
    root = pathlib.Path(root or data_dir()) / "cifar10" / "test"
    images, labels = [], []
    for label, cls in enumerate(CIFAR_CLASSES):
        files = sorted((root / cls).glob("*.jpg"))[:limit_per_class]
        images.extend(_read(f) for f in files)
        labels.extend([label] * len(files))
    return np.stack(images), np.array(labels, np.int64)


def cifar_lossless(root=None):
    """The 20 lossless CIFAR-10 test images and their labels."""
    root = pathlib.Path(root or data_dir()) / "cifar10" / "lossless"
    files = sorted(root.glob("cifar10_*.png"))
    return np.stack([_read(f) for f in files]), np.array([int(f.stem.rsplit("_", 1)[1]) for f in files], np.int64)


def imagenet_images(root=None, size=256, crop=224, limit=None):
    """(pixels (N, crop, crop, 3), labels) of the 1,000 sample images (crop=None: resize to size x size)."""
    root = pathlib.Path(root or data_dir()) / "imagenet" / "images"
    rows = [line.split() for line in (root / "labels.txt").read_text().splitlines() if line.strip()][:limit]
    pixels = np.stack([_read(root / r[0], size, crop) for r in rows])
    return pixels, np.array([int(r[1]) for r in rows], np.int64), [r[0] for r in rows]


def add_run_arguments(parser, results):
    """The data, image-selection, calibration and worker options shared by the experiments' command lines."""
    parser.add_argument("--data", type=pathlib.Path, default=data_dir())
    parser.add_argument("--out", type=pathlib.Path, default=results)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--limit-per-class", type=int, default=None, help="CIFAR-10 images per class (default: all)")
    parser.add_argument("--limit-imagenet", type=int, default=None)
    parser.add_argument("--calib-per-class", type=int, default=50)
    parser.add_argument("--calib", type=int, default=200, help="ImageNet calibration images")
    parser.add_argument("--method", default="minmax", choices=["minmax", "percentile"])
    parser.add_argument("--percentile", type=float, default=99.99)
    parser.add_argument("--rounding", default="half_up")
