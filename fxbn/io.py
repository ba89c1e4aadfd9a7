"""Save and load FixedPointBN layers: JSON (exact integers, repr-exact floats) or npz.

>>> import fxbn, tempfile, os
>>> layer = fxbn.from_affine([0.3, -0.2], [1.0, 2.5], in_dtype="int8")
>>> path = os.path.join(tempfile.mkdtemp(), "bn.json")
>>> layer.save(path)
>>> fxbn.load(path).multiplier.tolist() == layer.multiplier.tolist()
True
"""
import json
import os
import tempfile

import numpy as np


def _kind(path):
    ext = os.path.splitext(str(path))[1].lower()
    if ext not in (".json", ".npz"):
        raise ValueError(f"unknown file type {ext!r} for {path}: use .json or .npz")
    return ext


def save(layer, path):
    """Write atomically: nothing is left half-written if serialisation fails."""
    ext = _kind(path)
    d = layer.to_dict()
    directory = os.path.dirname(os.path.abspath(str(path)))
    fd, tmp = tempfile.mkstemp(dir=directory, suffix=ext + ".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            if ext == ".json":
                f.write(json.dumps(d, indent=1).encode("utf-8"))
            elif d.get("format") != "fxbn.FixedPointBN":  # other layer kinds: the record alone
                np.savez(f, meta=np.array(json.dumps(d)))
            else:
                arrays = {
                    "multiplier": np.asarray(d["multiplier"], np.int64),
                    "bias": np.asarray(d["bias"], np.int64),
                    "shift": np.asarray(d["shift"], np.int64),
                    "in_range": np.asarray(d["in_range"], np.int64),
                }
                meta = {k: v for k, v in d.items() if k not in arrays}
                np.savez(f, meta=np.array(json.dumps(meta)), **arrays)
        os.replace(tmp, str(path))
    except BaseException:
        os.unlink(tmp)
        raise


def load(path):
    """Read a layer written by FixedPointBN.save (or FixedPointAdd.save / FixedPointRescale.save)."""
    from fxbn.api import FixedPointBN

    ext = _kind(path)
    if ext == ".json":
        with open(path, "rb") as f:
            d = json.loads(f.read().decode("utf-8"))
    else:
        with np.load(path, allow_pickle=False) as z:
            if "meta" not in z.files:
                raise ValueError(f"{path} is not an fxbn npz file (no 'meta' entry)")
            d = json.loads(str(z["meta"]))
            if d.get("format") == "fxbn.FixedPointBN":
                for k in ("multiplier", "bias", "shift", "in_range"):
                    d[k] = z[k].tolist()
    if isinstance(d, dict) and d.get("format") == "fxbn.FixedPointAdd":
        from fxbn.ops import FixedPointAdd

        return FixedPointAdd.from_dict(d)
    if isinstance(d, dict) and "op" in d:
        from fxbn.ops import FixedPointRescale

        return FixedPointRescale.from_dict(d)
    return FixedPointBN.from_dict(d)
