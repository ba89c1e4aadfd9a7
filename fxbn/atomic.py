"""All-or-nothing file writes: every file goes to a temporary name in its own directory, then all are renamed.

A failure before the renames (serialisation, a full disk) leaves the old files untouched and removes the
temporaries; a failure during the renames of several files puts back the files already replaced (and removes the
ones that did not exist before), so a set such as a generated ``.h``/``.c`` pair is never half new.

>>> import os, tempfile
>>> d = tempfile.mkdtemp()
>>> write_files({os.path.join(d, "a.txt"): "one", os.path.join(d, "b.bin"): b"two"})
>>> sorted(os.listdir(d)), open(os.path.join(d, "a.txt")).read()
(['a.txt', 'b.bin'], 'one')
"""
import os
import shutil
import tempfile

__all__ = ["write_files", "write_file"]


def _write_one(f, content):
    if callable(content):
        content(f)
    elif isinstance(content, str):
        f.write(content.encode("utf-8"))
    else:
        f.write(content)


def write_file(path, content):
    """Write one file atomically; `content` is str (UTF-8), bytes, or a callable taking the open binary file."""
    write_files({path: content})


def write_files(contents):
    """Write {path: content} all or nothing (content: str, bytes or a callable writing to a binary file)."""
    paths = [os.path.abspath(os.fspath(p)) for p in contents]
    if len(set(paths)) != len(paths):
        raise ValueError("write_files: the same path is given twice")
    tmps, backups, replaced = {}, {}, []
    try:
        for path, content in zip(paths, contents.values()):
            directory, base = os.path.split(path)
            fd, tmps[path] = tempfile.mkstemp(dir=directory, prefix=f".{base}.", suffix=".tmp")
            with os.fdopen(fd, "wb") as f:
                _write_one(f, content)
        if len(paths) > 1:          # keep the old files reachable until every rename has succeeded
            for path in paths:
                if os.path.lexists(path):
                    directory, base = os.path.split(path)
                    fd, backup = tempfile.mkstemp(dir=directory, prefix=f".{base}.", suffix=".old")
                    os.close(fd)
                    backups[path] = backup
                    try:
                        os.unlink(backup)
                        os.link(path, backup)           # the old file itself under a second name
                    except OSError:
                        shutil.copy2(path, backup)
        for path in paths:
            os.replace(tmps[path], path)
            del tmps[path]
            replaced.append(path)
    except BaseException:
        for path in reversed(replaced):     # undo: the old file back, or no file where there was none
            try:
                if path in backups:
                    os.replace(backups.pop(path), path)
                else:
                    os.unlink(path)
            except OSError:
                pass
        raise
    finally:
        for tmp in list(tmps.values()) + list(backups.values()):
            try:
                os.unlink(tmp)
            except OSError:
                pass
