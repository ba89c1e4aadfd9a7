"""Layer records on disk: JSON (exact integers, repr-exact floats) or npz.  Data only: this module knows the record
format, not the layer class (fxbn.api builds and validates layers from the records it returns).

Reading treats every file as hostile: sizes are bounded before anything is decoded (an npz entry's shape and dtype
come from its .npy header, read before its data), and every failure is a ValueError naming the file.

>>> import os, tempfile
>>> path = os.path.join(tempfile.mkdtemp(), "r.json")
>>> write_record({"format": "x", "multiplier": [3]}, path)
>>> read_record(path)["multiplier"]
[3]
"""
import io
import json
import os
import tempfile
import zipfile

import numpy as np

MAX_CHANNELS = 1 << 22          # per layer; far above any real layer
MAX_META_BYTES = 256 << 20      # the npz's JSON metadata
MAX_JSON_BYTES = 1 << 30        # a .json layer file
_ARRAYS = {"multiplier": 1, "bias": 1, "shift": 1, "in_range": 2}   # name -> ndim (in_range: (channels, 2))


def _kind(path):
    ext = os.path.splitext(str(path))[1].lower()
    if ext not in (".json", ".npz"):
        raise ValueError(f"unknown file type {ext!r} for {path}: use .json or .npz")
    return ext


def record_bytes(record, path):
    """The bytes of `record` as a file at `path` (.json or .npz) holds them (for writing several files as one set:
    fxbn.atomic.write_files)."""
    ext = _kind(path)
    if ext == ".json":
        return json.dumps(record, indent=1).encode("utf-8")
    buf = io.BytesIO()
    if record.get("format") != "fxbn.FixedPointBN":     # other layer kinds: the record alone
        np.savez(buf, meta=np.array(json.dumps(record)))
    else:
        arrays = {k: np.asarray(record[k], np.int64) for k in _ARRAYS}
        meta = {k: v for k, v in record.items() if k not in arrays}
        np.savez(buf, meta=np.array(json.dumps(meta)), **arrays)
    return buf.getvalue()


def write_record(record, path):
    """Write atomically (temporary file, then rename): nothing is left half-written if serialisation fails."""
    ext = _kind(path)
    data = record_bytes(record, path)
    directory = os.path.dirname(os.path.abspath(str(path)))
    fd, tmp = tempfile.mkstemp(dir=directory, suffix=ext + ".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, str(path))
    except BaseException:
        os.unlink(tmp)
        raise


def _json(text, path):
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as e:   # JSONDecodeError is a ValueError; deep nesting a RecursionError
        raise ValueError(f"{path}: not valid JSON ({type(e).__name__}: {str(e)[:200]})") from None


def _npy_header(z, name, path):
    """(shape, dtype) of an npz entry from its header, without reading its data."""
    with z.open(name) as f:
        try:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
            elif version in ((2, 0), (3, 0)):
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
            else:
                raise ValueError(f"unsupported .npy version {version}")
        except ValueError as e:
            raise ValueError(f"{path}: entry {name!r}: {e}") from None
    return shape, dtype


def _open_npz(path):
    """The zip archive of an .npz file (FileNotFoundError as is; anything else unreadable -> ValueError)."""
    try:
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as e:
        if isinstance(e, FileNotFoundError):
            raise
        raise ValueError(f"{path}: not an npz file ({e})") from None


def _read_npz(path):
    with _open_npz(path) as zf:
        names = set(zf.namelist())
        want = ["meta"] + list(_ARRAYS)
        missing = [k for k in want if k + ".npy" not in names]
        if "meta" in missing:
            raise ValueError(f"{path} is not an fxbn npz file (no 'meta' entry)")
        shape, dtype = _npy_header(zf, "meta.npy", path)
        if shape != () or dtype.kind != "U" or dtype.itemsize > MAX_META_BYTES:
            raise ValueError(f"{path}: 'meta' must be one string of at most {MAX_META_BYTES} bytes, "
                             f"got shape {shape} dtype {dtype}")
        if len(missing) == len(_ARRAYS):          # a record-only file (layer kinds other than FixedPointBN)
            with np.load(path, allow_pickle=False) as z:
                record = _json(str(z["meta"]), path)
            if not isinstance(record, dict) or record.get("format") == "fxbn.FixedPointBN":
                raise ValueError(f"{path}: npz lacks {', '.join(missing)}")
            return record
        if missing:
            raise ValueError(f"{path}: npz lacks {', '.join(missing)}")
        headers = {k: _npy_header(zf, k + ".npy", path) for k in _ARRAYS}
        n = None
        for k, ndim in _ARRAYS.items():
            shape, dtype = headers[k]
            if dtype.kind not in "iu" or dtype.itemsize > 8 or len(shape) != ndim or (ndim == 2 and shape[1] != 2):
                raise ValueError(f"{path}: {k} must be an integer array of shape {'(C, 2)' if ndim == 2 else '(C,)'}"
                                 f", got shape {shape} dtype {dtype}")
            if shape[0] > MAX_CHANNELS:
                raise ValueError(f"{path}: {k} declares {shape[0]} channels (at most {MAX_CHANNELS})")
            if n is not None and shape[0] != n:
                raise ValueError(f"{path}: {k} has {shape[0]} channels, multiplier has {n}")
            n = shape[0]
        # the declared sizes are bounded: now the data may be read
        try:
            with np.load(path, allow_pickle=False) as z:
                record = _json(str(z["meta"]), path)
                if not isinstance(record, dict):
                    raise ValueError(f"{path}: 'meta' is not a JSON object")
                for k in _ARRAYS:
                    arr = z[k]
                    if arr.dtype == np.uint64 and arr.size and int(arr.max()) > np.iinfo(np.int64).max:
                        raise ValueError(f"{path}: {k} holds a value above int64")
                    record[k] = arr.tolist()
        except (OSError, zipfile.BadZipFile, EOFError) as e:
            raise ValueError(f"{path}: unreadable npz data ({e})") from None
    return record


def read_record(path):
    """The record (a dict, unvalidated) in a .json or .npz file written by write_record."""
    ext = _kind(path)
    if ext == ".json":
        size = os.path.getsize(path)
        if size > MAX_JSON_BYTES:
            raise ValueError(f"{path}: {size} bytes, more than a layer file may hold ({MAX_JSON_BYTES})")
        with open(path, "rb") as f:
            data = f.read()
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as e:
            raise ValueError(f"{path}: not UTF-8 text ({e})") from None
        return _json(text, path)
    return _read_npz(path)
