"""What the command-line tools share: one-line errors, the --data-dir flag, the run folders.

Used by train.py, demo.py, `python -m bench`, `python -m gr_numpy.data` and the tools in this
folder. Nothing here imports NumPy, so a mistyped flag is reported before any heavy import.
"""

import argparse
import dataclasses
import os
import sys

RUNS = "runs"                                         # every run folder lives under this one
DEFAULT_RUN = os.path.join(RUNS, "default")           # where `python train.py` writes
METRICS_NAME = "metrics.json"                         # the test scores, inside a run folder


class UserError(Exception):
    """A mistake the user can fix (a flag, a path, a file): shown as one line, exit code 2."""


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a bad flag is one line and exit code 2 (not the whole usage text)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def set_thread_env(argv, prog):
    """Read --threads N from argv and fix the thread count of BLAS and Numba at N (0: leave them
    at all cores). Call it before NumPy or Numba is imported: each reads it once, at start-up,
    and the numpy backend's results depend on it. (ops.set_threads changes Numba's count of a
    running process, up to this one.)"""
    early = OneLineParser(prog=prog, add_help=False)
    early.add_argument("--threads", type=int_in(0, os.cpu_count() or 1), default=0)
    n = early.parse_known_args(argv)[0].threads
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
        if n:
            os.environ[var] = str(n)


def fail(prog, message):
    """Print `prog: error: message` as one line on stderr and exit with code 2."""
    print(f"{prog}: error: {message}", file=sys.stderr)
    sys.exit(2)


def add_checkpoint(parser, default=DEFAULT_RUN, help_default=None):
    """The --checkpoint flag, taken the same way by every tool: a run folder or its checkpoint."""
    parser.add_argument("--checkpoint", default=default, metavar="PATH",
                        help="the trained model: a run folder written by train.py, or the "
                             f"checkpoint.npz in it (default: {help_default or default})")


def add_data_dir(parser, fetch=True):
    """The --data-dir flag, said the same way by every tool; fetch: whether a missing set is fetched."""
    then = "fetched if missing" if fetch else "never downloads"
    parser.add_argument("--data-dir", help="MNIST folder (default: $GR_NUMPY_DATA, else "
                                           f"~/.cache/gr_numpy/mnist; {then})")


# ---------------------------------------------------------------- flag values, checked at parse time
# argparse calls these as `type=`: a bad value becomes one line, `prog: error: argument --flag:
# ...`, before any work. NaN and inf are refused wherever a float is taken.

def int_in(lo, hi):
    """An argparse type: an integer from lo to hi."""
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number from {lo} to {hi}, "
                                             f"got {text!r}") from None
        if not lo <= value <= hi:
            raise argparse.ArgumentTypeError(f"must be from {lo} to {hi}, got {value}")
        return value
    parse.__name__ = "int"
    return parse


def float_in(lo, hi, lo_open=False):
    """An argparse type: a finite number in [lo, hi], or (lo, hi] with lo_open."""
    interval = f"{'(' if lo_open else '['}{lo:g}, {hi:g}]"

    def parse(text):
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number in {interval}, "
                                             f"got {text!r}") from None
        if not (lo < value if lo_open else lo <= value) or not value <= hi:  # NaN fails both
            raise argparse.ArgumentTypeError(f"must be a finite number in {interval}, got {text}")
        return value
    parse.__name__ = "float"
    return parse


# ---------------------------------------------------------------- flags from config fields
# A config dataclass field whose metadata has a "help" is a flag: named "--field-name" or its
# "flag", checked by its "range" (lo, hi; "lo_open") or "choices"; a bool is an ablation flag
# that sets the field to the opposite of its default. A field with only a "flag" is set by
# that flag with another field ("mirrors": reversed, as the decoder mirrors --hidden).

def config_flags(*configs):
    """-> {flag: [(config class, field), ...]} over the config classes, in their field order."""
    table = {}
    for config in configs:
        for f in dataclasses.fields(config):
            if "flag" in f.metadata or "help" in f.metadata:
                flag = f.metadata.get("flag", "--" + f.name.replace("_", "-"))
                table.setdefault(flag, []).append((config, f))
    return table


def field_type(flag, f):
    """The argparse type of a config field: its range checked, a tuple read as 512,256."""
    lo, hi = f.metadata.get("range", (None, None))
    if f.type is float:
        return float_in(lo, hi, lo_open=f.metadata.get("lo_open", False))
    if f.type is not tuple:
        return int_in(lo, hi) if f.type is int else str

    def widths(text):
        try:
            values = tuple(int(h) for h in str(text).split(","))
        except ValueError:
            values = ()
        if not values or min(values) < lo:
            raise argparse.ArgumentTypeError(f"{flag} must be comma-separated positive integers "
                                             f"like 512,256, got {text!r}")
        if max(values) > hi:
            raise argparse.ArgumentTypeError(f"{flag} widths must be at most {hi}, got {text!r}")
        return values
    return widths


def add_config_flags(groups, table, presets):
    """Add every flag of table to groups[field's "group", default "recipe"]; its help ends with
    the field's default and each preset's value."""
    for flag, [(_, f), *_] in table.items():
        if "help" not in f.metadata:
            continue                                         # set by a flag of its own
        values = "".join(f"; {name} {shown(recipe[f.name])}" for name, recipe in presets.items()
                         if f.name in recipe)
        if f.type is bool:
            kwargs = {"action": "store_true", "help": f.metadata["help"]}
        else:
            kwargs = {"type": field_type(flag, f), "choices": f.metadata.get("choices"),
                      "metavar": None if "choices" in f.metadata else
                      flag.lstrip("-").replace("-", "_").upper(),
                      "help": f"{f.metadata['help']} (default {shown(f.default)}{values})"}
        groups[f.metadata.get("group", "recipe")].add_argument(flag, dest=f.name, **kwargs)


def shown(value):
    """A config value as a flag takes it: (512, 256) -> 512,256."""
    return ",".join(map(str, value)) if isinstance(value, (list, tuple)) else value


# ---------------------------------------------------------------- paths, checked before any work

def output_file(prog, flag, path):
    """Refuse (one line, exit 2) an output file path that cannot be written; return it unchanged."""
    parent = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        fail(prog, f"{flag} {path} is a folder; give a file name, e.g. {os.path.join(path, 'out')}")
    if not os.path.isdir(parent):
        what = "is a file, not a folder" if os.path.exists(parent) else "does not exist"
        fail(prog, f"{flag} {path}: the folder {parent} {what}; create it or choose another path")
    if not os.access(parent, os.W_OK):
        fail(prog, f"{flag} {path}: the folder {parent} is not writable; choose another path")
    if os.path.exists(path) and not os.access(path, os.W_OK):
        fail(prog, f"{flag} {path} exists and is read-only; choose another path")
    return path


def output_dir(prog, flag, path):
    """Create the folder if needed and prove it writable, or refuse in one line (exit 2)."""
    if os.path.exists(path) and not os.path.isdir(path):
        fail(prog, f"{flag} {path} is a file, not a folder; choose another path")
    try:
        os.makedirs(path, exist_ok=True)
        probe = os.path.join(path, f".write-test-{os.getpid()}")
        with open(probe, "w") as f:
            f.write("ok")
        os.remove(probe)
    except OSError as e:
        fail(prog, f"cannot write to {flag} {path}: {e.strerror or e}; choose another folder")
    return path


def available_memory():
    """Bytes of memory a new allocation can still get (Linux: MemAvailable), or None if unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None
