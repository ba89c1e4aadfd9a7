"""Arrays that end right before an inaccessible page, for child processes that must crash on an overrun.

A test writes a script that builds its arrays with ``guarded`` and runs it with ``run``; a read or write past an array
is then a segfault of the child, not a silent pass::

    res = guard_pages.run("from guard_pages import guarded; x = guarded((3, 5), 'int8'); print('ok')")
    assert res.returncode == 0 and res.stdout.startswith("ok")
"""
import ctypes
import mmap
import os
import subprocess
import sys

import numpy as np

PAGE = mmap.PAGESIZE
_keep = []  # the mappings outlive the arrays viewing them


def guarded(shape, dtype):
    """A writeable array of ``shape`` whose last byte is the last byte before a PROT_NONE page."""
    libc = ctypes.CDLL(None)
    libc.mprotect.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
    count = int(np.prod(shape))
    nbytes = count * np.dtype(dtype).itemsize
    pages = (nbytes + PAGE - 1) // PAGE + 1
    m = mmap.mmap(-1, pages * PAGE)
    base = ctypes.addressof(ctypes.c_char.from_buffer(m))
    assert libc.mprotect(base + (pages - 1) * PAGE, PAGE, 0) == 0
    _keep.append(m)
    return np.frombuffer(m, dtype, count, (pages - 1) * PAGE - nbytes).reshape(shape)


def run(script, *args, timeout=300):
    """Runs ``script`` in a child Python that can import this module; returns the CompletedProcess."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (os.path.dirname(os.path.abspath(__file__)),
                                                    env.get("PYTHONPATH")) if p)
    return subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, timeout=timeout,
                          env=env)
