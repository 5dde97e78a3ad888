"""A run folder belongs to one training process at a time.

`train.py` takes an exclusive lock on `<run folder>/.lock` for its whole life. The operating
system releases it when the process ends in any way (even kill -9), so a crash never leaves a
stale lock; the file stays behind, holding the last owner's process id, and means nothing once
unlocked. A second training process on the same folder finds the lock taken and stops at once,
before it reads or writes anything there. Readers (`demo.py`, `--eval-only`) take no lock.
"""

import os
import sys

from .cli import METRICS_NAME, UserError, output_dir

LOCK_NAME = ".lock"

try:                                          # POSIX
    import fcntl

    def _try_lock(fd):
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            return False
except ImportError:                           # Windows
    import msvcrt

    def _try_lock(fd):
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
            return True
        except OSError:
            return False


class RunFolderBusy(RuntimeError):
    """Another live process holds the run folder's lock."""


class RunLock:
    """The exclusive lock on one run folder, held from `acquire` until the process ends."""

    def __init__(self, folder):
        self.path = os.path.join(folder, LOCK_NAME)
        self.fd = None

    def acquire(self, flag="--out"):
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        if not _try_lock(fd):
            holder = os.read(fd, 200).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise RunFolderBusy(f"{os.path.dirname(self.path) or '.'} is in use by {holder}; "
                                f"wait for it to end, or choose another {flag}")
        os.ftruncate(fd, 0)
        os.write(fd, f"process {os.getpid()} ({' '.join(sys.argv[:1] or ['python'])})\n".encode())
        self.fd = fd
        return self

    def release(self):
        if self.fd is not None:
            os.close(self.fd)                 # closing the file releases the lock
            self.fd = None


def claim(prog, out, resume, overwrite, checkpoint_name):
    """Create the run folder out, lock it for this run, and refuse to replace a model in it by
    accident (UserError, one line). Returns the lock, held until the process ends."""
    ckpt = os.path.join(out, checkpoint_name)
    if resume and not os.path.isfile(ckpt):
        raise UserError(f"--resume: no checkpoint at {ckpt}; run without --resume to start")
    output_dir(prog, "--out", out)
    try:
        lock = RunLock(out).acquire()
    except (RunFolderBusy, OSError) as e:
        raise UserError(str(e)) from None
    if os.path.exists(ckpt) and not (resume or overwrite):
        lock.release()
        raise UserError(f"{out} already holds a trained model ({ckpt}); continue it with "
                        f"--resume, train into a new --out DIR, or replace it with --overwrite")
    if overwrite and os.path.exists(os.path.join(out, METRICS_NAME)):
        os.remove(os.path.join(out, METRICS_NAME))     # old scores, of the replaced model
    return lock
