"""Writing a file whole or not at all: the old file survives any failure part-way.

Every file a tool writes (checkpoints, metrics, figures, the demo's PNG and GIF, the benchmark's
JSON) goes through `save_atomically`: the bytes go to a temporary file beside the target, are
flushed to disk, and only then is the temporary renamed over the target, an atomic step on POSIX
and Windows. A full disk, a file-size limit or a crash leaves the previous file as it was.
"""

import json
import os
from pathlib import Path


def save_atomically(path, save):
    """Call save(tmp) to write a temporary file tmp beside path, then rename it to path.

    On any error the temporary is removed and path is untouched. tmp keeps path's suffix, for
    writers that choose the format by the file name.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")
    try:
        save(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())                 # on disk before the rename makes it visible
        os.replace(tmp, path)
    except BaseException:
        try:
            tmp.unlink()
        except OSError:
            pass
        raise
    return path


def write_atomically(path, write):
    """Call write(f) on a new binary file, then rename it to path. On any error, path is untouched."""
    def save(tmp):
        with open(tmp, "wb") as f:
            write(f)
    return save_atomically(path, save)


def write_json(path, data):
    """Write data as indented JSON, atomically (the metrics of a run, the benchmark's results)."""
    text = (json.dumps(data, indent=2) + "\n").encode()
    return write_atomically(path, lambda f: f.write(text))
