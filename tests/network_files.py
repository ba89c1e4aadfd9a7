"""Shared by the saved-network tests: rewrite a saved .npz with a tampered field, and require a named error."""
import json

import numpy as np
import pytest

from fxbn.network import load


def rewrite(src, dst, edit_meta=None, edit_arrays=None):
    """Copy the network file src to dst with edit_meta(meta) and edit_arrays(meta, arrays) applied."""
    with np.load(src, allow_pickle=False) as z:
        meta = json.loads(str(z["meta"]))
        arrays = {k: z[k].copy() for k in z.files if k != "meta"}
    if edit_meta:
        edit_meta(meta)
    if edit_arrays:
        edit_arrays(meta, arrays)
    np.savez(dst, meta=np.array(json.dumps(meta)), **arrays)
    return dst


def assert_malformed_named(path, tmp_path, edit, field):
    """A file with edit applied to its meta fails to load, with or without check, naming the file and the field."""
    bad = rewrite(path, tmp_path / "bad.npz", edit)
    for check in (True, False):
        with pytest.raises(ValueError) as e:
            load(bad, check=check)
        assert str(bad) in str(e.value) and field in str(e.value), str(e.value)
