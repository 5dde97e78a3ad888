"""Nothing a user types loses a trained model, and every bad input is one line.

Each bad input goes through the real command line in a fresh process: it must exit with the
stated code, print exactly one line on stderr and no traceback, and leave every existing file as
it was. Then the cases that need a running training: a second process on a locked run folder,
SIGTERM and SIGHUP mid-run, a full disk (a file-size limit smaller than a checkpoint), and the
first run's compile notice.
"""

import hashlib
import os
import pty
import re
import resource
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from gr_numpy.autoencoder import Autoencoder, AutoencoderConfig
from gr_numpy.checkpoint import load_checkpoint, save_checkpoint
from gr_numpy.model import VAE, VAEConfig
from gr_numpy.tools.runfolder import RunLock

ROOT = Path(__file__).resolve().parents[1]
PROGRAMS = {"train": [str(ROOT / "train.py")], "demo": [str(ROOT / "demo.py")],
            "inspector": ["-m", "gr_numpy.tools.inspector"],
            "figures": ["-m", "gr_numpy.tools.figures"],
            "data": ["-m", "gr_numpy.data"], "bench": ["-m", "bench"]}
SMALL_RUN = ["--hidden", "32", "--train-subset", "1000", "--val-size", "500", "--no-figures"]


def env_for(tmp_path, **extra):
    """The test's environment, with the repository importable and no network fetches."""
    path = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    return dict(os.environ, PYTHONPATH=path, GR_NUMPY_NO_DOWNLOAD="1", MPLBACKEND="Agg", **extra)


def run(program, *args, cwd, env, timeout=600, **kwargs):
    return subprocess.run([sys.executable, *PROGRAMS[program], *map(str, args)], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=timeout, **kwargs)


def snapshot(folder):
    """Path -> SHA-256 of every file below folder ("folder" for a folder), but the lock files.

    A training process writes its id into `<run>/.lock` as it takes the lock, before it looks
    at anything else in the folder; that file is bookkeeping, never a result.
    """
    return {p: hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "folder"
            for p in sorted(Path(folder).rglob("*")) if p.name != ".lock"}


@pytest.fixture(scope="module")
def place(tmp_path_factory, mnist_dir):
    """A workspace: a finished run, a run whose parameters hold NaN, a plain file, a folder."""
    root = tmp_path_factory.mktemp("robust")
    cfg = VAEConfig(enc_hidden=(32,), dec_hidden=(32,))
    model = VAE(cfg, rng=np.random.default_rng(0))
    run_dir = root / "runs" / "finished"
    run_dir.mkdir(parents=True)
    save_checkpoint(run_dir / "checkpoint.npz", model.params, {"model": cfg.to_dict()})
    (run_dir / "metrics.json").write_text('{"test_acc": 0.9, "confusion": [], "history": []}\n')
    nan_dir = root / "runs" / "nan"
    nan_dir.mkdir()
    broken = {k: v.copy() for k, v in model.params.items()}
    broken["enc0.W"][3, 4] = np.nan
    save_checkpoint(nan_dir / "checkpoint.npz", broken, {"model": cfg.to_dict()})
    (nan_dir / "metrics.json").write_text('{"test_acc": 0.9, "confusion": [], "history": []}\n')
    halves = Autoencoder(AutoencoderConfig(enc_hidden=(16,), dec_hidden=(16,)),
                         rng=np.random.default_rng(0))
    save_checkpoint(root / "halves.npz", halves.params, {"model": halves.config.to_dict(),
                                                         "routing": halves.routing.to_dict()})
    (root / "a-file.txt").write_text("not a folder, not a checkpoint\n")
    (root / "a-folder").mkdir()
    return {"root": root, "run": run_dir, "nan": nan_dir / "checkpoint.npz", "nanrun": nan_dir,
            "halves": root / "halves.npz", "file": root / "a-file.txt", "dir": root / "a-folder",
            "missing": root / "no-such-thing", "data": mnist_dir}


# (program, arguments, what the one line must say). {run}, {nan}, ... are the fixture's paths.
BAD = [
    # train.py: numbers, over their whole range
    ("train", "--epochs 0", "--epochs: must be from 1"),
    ("train", "--epochs -3", "--epochs: must be from 1"),
    ("train", "--epochs 1000000000000", "--epochs: must be from 1"),
    ("train", "--epochs three", "expected a whole number"),
    ("train", "--batch-size 0", "--batch-size: must be from 1"),
    ("train", "--batch-size 1000000000", "--batch-size: must be from 1"),
    ("train", "--lr nan", "--lr: must be a finite number"),
    ("train", "--lr inf", "--lr: must be a finite number"),
    ("train", "--lr -1", "--lr: must be a finite number"),
    ("train", "--lr 0", "--lr: must be a finite number"),
    ("train", "--lr 5", "--lr: must be a finite number"),
    ("train", "--lr-decay 0", "--lr-decay: must be a finite number"),
    ("train", "--lr-decay 1.5", "--lr-decay: must be a finite number"),
    ("train", "--lr-decay nan", "--lr-decay: must be a finite number"),
    ("train", "--kl-weight nan", "--kl-weight: must be a finite number"),
    ("train", "--kl-weight -1", "--kl-weight: must be a finite number"),
    ("train", "--kl-weight inf", "--kl-weight: must be a finite number"),
    ("train", "--l1-weight nan", "--l1-weight: must be a finite number"),
    ("train", "--hidden 512,,x", "--hidden must be comma-separated"),
    ("train", "--hidden 0", "--hidden must be comma-separated"),
    ("train", "--hidden 200000", "--hidden widths must be at most 100000"),
    ("train", "--hidden 100000,100000 --batch-size 60000", "GiB of memory"),
    ("train", "--latent 10", "unrecognized arguments: --latent"),   # the routing sets the width
    ("train", "--routing three-per-digit", "invalid choice"),
    ("train", "--seed -1", "--seed: must be from 0"),
    ("train", "--seed 99999999999999999999", "--seed: must be from 0"),
    ("train", "--threads -1", "--threads: must be from 0"),
    ("train", "--threads 9999", "--threads: must be from 0"),
    ("train", "--val-size 60000", "--val-size: must be from 0"),
    ("train", "--train-subset -1", "--train-subset: must be from 0"),
    ("train", "--train-subset 59000", "training images left after --val-size"),
    ("train", "--preset bogus", "invalid choice"),
    ("train", "--style -1", "--style: must be from 0"),
    ("train", "--style two", "expected a whole number"),
    ("train", "--style-kl -0.5", "--style-kl: must be a finite number"),
    ("train", "--style-kl nan", "--style-kl: must be a finite number"),
    ("train", "--style-input sideways", "invalid choice"),
    ("train", "--weight-decay-form l2", "invalid choice"),
    ("train", "--weight-decay -0.1", "--weight-decay: must be a finite number"),
    ("train", "--weight-decay 2", "--weight-decay: must be a finite number"),
    ("train", "--weight-decay nan", "--weight-decay: must be a finite number"),
    ("train", "--resume --overwrite", "pass one"),
    # train.py: paths and files
    ("train", "--out {file}", "is a file, not a folder"),
    ("train", "--out {run}", "already holds a trained model"),
    ("train", "--out {run} --epochs 1", "--resume, train into a new --out DIR, or replace it"),
    ("train", "--resume --out {missing}", "no checkpoint at"),
    ("train", "--data-dir {file}", "--data-dir"),
    ("train", "--eval-only --checkpoint {missing}", "no checkpoint at"),
    ("train", "--eval-only --checkpoint {file}", "not a readable checkpoint"),
    ("train", "--eval-only --checkpoint {dir}", "holds no checkpoint.npz"),
    ("train", "--eval-only --checkpoint {nan}", "NaN or inf"),
    ("train", "--resume --out {nanrun} --hidden 32 --data-dir {data}", "NaN or inf"),
    # demo.py
    ("demo", "--checkpoint {missing}", "no checkpoint at"),
    ("demo", "--checkpoint {dir}", "holds no checkpoint.npz"),
    ("demo", "--checkpoint {file} --save {root}/x.png", "not a readable checkpoint"),
    ("demo", "--checkpoint {nan} --save {root}/x.png", "NaN or inf"),
    ("demo", "--checkpoint {run}/checkpoint.npz --morph-frames 1", "--morph-frames: must be"),
    ("demo", "--checkpoint {run}/checkpoint.npz --morph-frames 1000000000", "--morph-frames"),
    ("demo", "--checkpoint {run}/checkpoint.npz --seed -5", "--seed: must be from 0"),
    ("demo", "--checkpoint {run}/checkpoint.npz --save {missing}/x.png", "does not exist"),
    ("demo", "--checkpoint {run}/checkpoint.npz --save {dir}", "is a folder"),
    ("demo", "--checkpoint {run}/checkpoint.npz --morph {file}/x.gif", "is a file, not a folder"),
    ("demo", "--checkpoint {run} --save {root}/x.txt", "matplotlib cannot write .txt"),
    ("demo", "--checkpoint {run} --morph {root}/x.png", "the animation is written as a GIF"),
    ("demo", "--checkpoint {run} --html {missing}/x.html", "does not exist"),
    ("demo", "--checkpoint {run} --html {dir}", "is a folder"),
    ("demo", "--checkpoint {run} --html {root}/x.html --data-dir {dir}", "--html embeds test digits, and"),
    ("demo", "--checkpoint {halves} --morph {root}/x.gif", "--morph shows VAEs only"),
    # the other tools
    ("inspector", "--batch-size 0", "--batch-size: must be from 1"),
    ("inspector", "--seed -1", "--seed: must be from 0"),
    ("inspector", "--checkpoint {nan}", "NaN or inf"),
    ("inspector", "--checkpoint {file}", "not a readable checkpoint"),
    ("inspector", "--checkpoint {dir}", "holds no checkpoint.npz"),
    ("inspector", "--untrained --plot {missing}/t.png", "does not exist"),
    ("inspector", "--untrained --checkpoint {run}/checkpoint.npz", "exclude each other"),
    ("figures", "--checkpoint {missing}", "no checkpoint at"),
    ("figures", "--checkpoint {file}", "not a readable checkpoint"),
    ("figures", "--checkpoint {dir}", "holds no checkpoint.npz"),
    ("figures", "--checkpoint {run} --out {file}", "is a file, not a folder"),
    ("figures", "--checkpoint {run} --compare {dir}", "holds no checkpoint.npz"),
    ("figures", "--checkpoint {nanrun} --data-dir {data}", "NaN or inf"),
    ("figures", "--run {run}", "unrecognized arguments: --run"),    # now --checkpoint
    ("data", "--data-dir {file}", "is a file"),
    ("bench", "--repeats 0", "--repeats: must be from 1"),
    ("bench", "--only nonsense", "invalid choice"),
    ("bench", "--json {missing}/b.json", "does not exist"),
    ("bench", "--json {dir}", "is a folder"),
]


@pytest.mark.parametrize("program, args, message", BAD,
                         ids=[f"{p} {a}" for p, a, _ in BAD])
def test_bad_input_is_one_line_exit_2_and_changes_no_file(place, program, args, message):
    argv = args.format(**place).split()
    before = snapshot(place["root"])
    result = run(program, *argv, cwd=place["root"], env=env_for(place["root"]))
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert message in lines[0], lines[0]
    assert snapshot(place["root"]) == before              # nothing was written or replaced


def test_a_second_training_process_on_a_locked_folder_exits_2_naming_the_first(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    lock = RunLock(str(out)).acquire()                     # this process plays the first run
    try:
        result = run("train", "--out", out, *SMALL_RUN, cwd=tmp_path, env=env_for(tmp_path))
    finally:
        lock.release()
    assert result.returncode == 2
    assert f"is in use by process {os.getpid()}" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (out / "checkpoint.npz").exists()


def test_a_lock_dies_with_its_process(tmp_path):
    """kill -9 leaves the lock file but not the lock: the next run starts."""
    out = tmp_path / "run"
    out.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; "
                               "from gr_numpy.tools.runfolder import RunLock; "
                               f"RunLock({str(out)!r}).acquire(); print('locked', flush=True); "
                               "time.sleep(600)"], stdout=subprocess.PIPE, text=True,
                              env=env_for(tmp_path))
    assert holder.stdout.readline().strip() == "locked"
    holder.kill()
    holder.wait()
    assert (out / ".lock").exists()
    RunLock(str(out)).acquire().release()


def start_training(tmp_path, out, *extra):
    proc = subprocess.Popen([sys.executable, *PROGRAMS["train"], "--out", str(out), *SMALL_RUN,
                             "--epochs", "500", *extra], cwd=tmp_path, text=True,
                            env=env_for(tmp_path, PYTHONUNBUFFERED="1"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 600
    for line in proc.stdout:                               # wait until epoch 1 is done and saved
        if line.startswith("epoch  1 |") or time.time() > deadline:
            break
    return proc


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_sigterm_and_sighup_save_like_ctrl_c(tmp_path, signum):
    out = tmp_path / "run"
    proc = start_training(tmp_path, out)
    time.sleep(0.5)                                        # into epoch 2
    proc.send_signal(signum)
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 128 + signum, stderr
    assert f"interrupted by {signal.Signals(signum).name}" in stdout
    assert "--resume" in stdout and "Traceback" not in stderr
    _, meta, _, _ = load_checkpoint(out / "checkpoint.npz")
    assert meta["epoch"] >= 1                              # the position when the signal came


def test_a_full_disk_keeps_the_previous_checkpoint(tmp_path, mnist_dir):
    """A file-size limit smaller than a checkpoint: the write fails, the old file stays."""
    out = tmp_path / "run"
    env = env_for(tmp_path)
    first = run("train", "--out", out, "--epochs", "1", *SMALL_RUN[2:], "--data-dir", mnist_dir,
                cwd=tmp_path, env=env)                     # the default model: a 13 MB checkpoint
    assert first.returncode == 0, first.stderr
    before = snapshot(out)

    def small_files():
        resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, resource.RLIM_INFINITY))
    second = run("train", "--out", out, "--epochs", "2", *SMALL_RUN[2:], "--resume",
                 "--data-dir", mnist_dir, cwd=tmp_path, env=env, preexec_fn=small_files)
    assert second.returncode == 1, second.stderr
    assert "Traceback" not in second.stderr
    lines = second.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot write" in lines[0] and "intact" in lines[0], lines
    after = snapshot(out)
    assert after == before                                 # same files, same bytes, no leftovers


def test_nan_loss_before_any_checkpoint_says_none_was_written(tmp_path, mnist_dir):
    from gr_numpy.data import load_mnist
    from gr_numpy.training import TrainConfig, Trainer, TrainingDiverged

    images, labels = load_mnist("train", mnist_dir)
    saved = []
    trainer = Trainer(VAEConfig(enc_hidden=(16,), dec_hidden=(16,)), TrainConfig(epochs=1),
                      images[:300], labels[:300], images[-100:], labels[-100:],
                      save=saved.append, log=lambda line: None)
    trainer.model.params["out.b"][0] = np.nan
    with pytest.raises(TrainingDiverged, match="loss became nan at epoch 1, step 1"):
        trainer.run()
    assert saved == []          # nothing was saved: train.py says "no checkpoint was written yet"


def test_first_run_says_it_compiles_and_shows_progress_from_the_first_batch(tmp_path, mnist_dir):
    """An empty Numba cache, in a terminal: the compile notice, then 'epoch 1: 1/N batches'."""
    env = env_for(tmp_path, NUMBA_CACHE_DIR=str(tmp_path / "numba-cache"))
    main_fd, child_fd = pty.openpty()                      # stdout is a terminal
    proc = subprocess.Popen([sys.executable, *PROGRAMS["train"], "--out", str(tmp_path / "run"),
                             "--epochs", "1", *SMALL_RUN, "--data-dir", str(mnist_dir)],
                            cwd=tmp_path, env=env, stdout=child_fd, stderr=subprocess.PIPE)
    os.close(child_fd)
    output, deadline = b"", time.time() + 900
    while time.time() < deadline:
        ready, _, _ = select.select([main_fd], [], [], 5)
        if ready:
            try:
                chunk = os.read(main_fd, 4096)
            except OSError:                                # the child closed the terminal
                break
            if not chunk:
                break
            output += chunk
        elif proc.poll() is not None:
            break
    proc.wait(timeout=60)
    os.close(main_fd)
    text = output.decode(errors="replace")
    assert proc.returncode == 0, proc.stderr.read()
    notice = text.index("compiling the kernels, once")
    first_batch = re.search(r"epoch 1: 1/\d+ batches", text)
    assert first_batch and notice < first_batch.start() < text.index("epoch  1 |")
