"""Training: it learns on real MNIST, resumes exactly, and never loses a good checkpoint."""

import json
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from gr_numpy import checkpoint
from gr_numpy.checkpoint import CheckpointError, load_checkpoint, load_model, save_checkpoint
from gr_numpy.autoencoder import AutoencoderConfig
from gr_numpy.data import load_mnist, to_rows
from gr_numpy.routing import halves, one_per_digit, two_per_digit
from gr_numpy.model import VAEConfig
from gr_numpy.model import VAE
from gr_numpy import training
from gr_numpy.training import Trainer, TrainConfig, TrainingDiverged, random_shift

ROOT = Path(__file__).resolve().parents[1]
SMALL = VAEConfig(enc_hidden=(32,), dec_hidden=(32,))


def run_train(*args, env=None):
    return subprocess.run([sys.executable, str(ROOT / "train.py"), *args], capture_output=True,
                          text=True, env=env, cwd=ROOT, timeout=600)


@pytest.fixture(scope="module")
def mnist(mnist_dir):
    images, labels = load_mnist("train", mnist_dir)
    return images[:1200], labels[:1200], images[-500:], labels[-500:]


def make_trainer(mnist, out, epochs=2, seed=3, routed=True, config=SMALL, routing=None, **train):
    """A Trainer that saves to out/checkpoint.npz, as train.py's does."""
    tcfg = TrainConfig(epochs=epochs, batch_size=100, seed=seed, routed=routed, **train)
    path = Path(out) / "checkpoint.npz"
    Path(out).mkdir(parents=True, exist_ok=True)
    trainer = Trainer(config, tcfg, *mnist, routing=routing, log=lambda line: None,
                      save=lambda t: save_checkpoint(path, *t.state()))
    trainer.checkpoint_path = path
    return trainer


def restore(trainer):
    trainer.load_state(*load_checkpoint(trainer.checkpoint_path))


# --------------------------------------------------------------------- end to end, real MNIST
def test_short_real_run_beats_chance_and_writes_its_outputs(mnist_dir, tmp_path):
    out = tmp_path / "run"
    result = run_train("--hidden", "64", "--epochs", "2", "--train-subset", "5000",
                       "--val-size", "2000", "--out", str(out), "--data-dir", str(mnist_dir),
                       "--no-figures")
    assert result.returncode == 0, result.stderr
    assert "epoch  2 | loss" in result.stdout
    metrics = json.loads((out / "metrics.json").read_text())
    assert len(metrics["history"]) == 2 and len(metrics["per_class_acc"]) == 10
    assert metrics["history"][-1]["val_acc"] > 0.3          # chance is 0.1
    assert metrics["test_acc"] > 0.3
    # --eval-only scores the checkpoint the same way
    again = run_train("--eval-only", "--checkpoint", str(out / "checkpoint.npz"),
                      "--data-dir", str(mnist_dir))
    assert again.returncode == 0, again.stderr
    assert f"acc {100 * metrics['test_acc']:.2f}%" in again.stdout


def test_routing_is_what_aligns_the_latent_with_the_labels(mnist_dir, tmp_path):
    images, labels = load_mnist("train", mnist_dir)
    data = images[:6000], labels[:6000], images[-1000:], labels[-1000:]
    routed = make_trainer(data, tmp_path / "a", epochs=3)
    plain = make_trainer(data, tmp_path / "b", epochs=3, routed=False)
    routed.run()
    plain.run()
    assert routed.history[-1]["val_acc"] > plain.history[-1]["val_acc"] + 0.2


# --------------------------------------------------------------------- augmentation
def shifted_by_slicing(image, dy, dx):
    """The twin of random_shift for one image and a known offset: copy the overlap, 0 elsewhere."""
    H, W = image.shape
    out = np.zeros_like(image)
    out[max(dy, 0):H + min(dy, 0), max(dx, 0):W + min(dx, 0)] = \
        image[max(-dy, 0):H - max(dy, 0), max(-dx, 0):W - max(dx, 0)]
    return out


def test_random_shift_moves_each_image_by_its_own_offset_and_keeps_its_shape():
    images = np.random.default_rng(0).integers(0, 256, size=(40, 28, 28), dtype=np.uint8)
    out = random_shift(images, 3, np.random.default_rng(5))
    dy, dx = np.random.default_rng(5).integers(-3, 4, size=(2, 40))     # the same draws
    assert out.shape == images.shape and out.dtype == images.dtype
    for b in range(40):
        np.testing.assert_array_equal(out[b], shifted_by_slicing(images[b], dy[b], dx[b]))
    assert len(set(zip(dy, dx))) > 10                 # each image draws its own offset
    # By hand: a lit pixel at (14, 14) lands on (14 + dy, 14 + dx); one in the corner may leave.
    dot = np.zeros((1, 28, 28), np.uint8)
    dot[0, 14, 14] = 255
    moved = random_shift(dot, 2, np.random.default_rng(1))
    dy, dx = np.random.default_rng(1).integers(-2, 3, size=(2, 1))
    assert moved.sum() == 255 and moved[0, 14 + dy[0], 14 + dx[0]] == 255


def test_shift_touches_training_batches_only_drawn_from_the_seed_not_the_labels(mnist, tmp_path,
                                                                                 monkeypatch):
    seen, shifted = [], []               # the x of every training step; every batch shifted
    step, shift = training.train_step, training.random_shift

    def recording_step(model, opt, x, labels, eps, lr, **options):
        seen.append(x.copy())
        return step(model, opt, x, labels, eps, lr, **options)

    def recording_shift(images, max_shift, rng):
        shifted.append(images.shape)
        return shift(images, max_shift, rng)

    monkeypatch.setattr(training, "train_step", recording_step)
    monkeypatch.setattr(training, "random_shift", recording_shift)

    def batches(labels=mnist[1], seed=3, shift=2):
        seen.clear(), shifted.clear()
        data = (mnist[0], labels, mnist[2], mnist[3])
        assert make_trainer(data, tmp_path / f"s{seed}-{shift}", epochs=1, seed=seed,
                            shift=shift).run()
        return list(seen), list(shifted)

    x, calls = batches()
    # Training batches only: one call per step (12 of 100 images), none for the validation
    # score that ends the epoch; and none at all with shift 0.
    assert calls == [(100, 28, 28)] * 12
    plain, no_calls = batches(shift=0)
    assert no_calls == [] and x[0].shape == plain[0].shape == (100, 784)
    assert not np.array_equal(x[0], plain[0])            # same images, moved
    np.testing.assert_allclose(x[0].sum(), plain[0].sum(), rtol=0.02)   # ink kept, nearly all
    # Label-free: other labels change the model, not one pixel of what it is shown.
    other_labels, _ = batches(labels=(mnist[1] + 1) % 10)
    assert all(np.array_equal(a, b) for a, b in zip(x, other_labels))
    # Seeded: the same seed gives the same shifts, another seed others.
    again, other_seed = batches()[0], batches(seed=4)[0]
    assert all(np.array_equal(a, b) for a, b in zip(x, again))
    assert not np.array_equal(x[0], other_seed[0])


def test_kl_warmup_gives_each_epoch_its_factor_and_only_a_vae_has_one(mnist, tmp_path,
                                                                        monkeypatch):
    scales, step = [], training.train_step

    def recording_step(model, opt, x, labels, eps, lr, **options):
        scales.append(options["kl_scale"])
        return step(model, opt, x, labels, eps, lr, **options)

    monkeypatch.setattr(training, "train_step", recording_step)
    assert make_trainer(mnist, tmp_path, epochs=3, kl_warmup=2).run()
    assert scales == [1 / 3] * 12 + [2 / 3] * 12 + [1.0] * 12    # 12 steps of 100 per epoch
    with pytest.raises(ValueError, match="kl_warmup is a VAE's"):
        make_trainer(mnist, tmp_path / "ae", config=AutoencoderConfig(), routing=halves(),
                     kl_warmup=1)


# --------------------------------------------------------------------- resume and checkpoints
def test_resume_mid_epoch_equals_an_uninterrupted_run(mnist, tmp_path, monkeypatch):
    whole = make_trainer(mnist, tmp_path / "whole")
    assert whole.run()

    broken = make_trainer(mnist, tmp_path / "broken")
    real_step, calls = broken.opt.step, []

    def step_then_interrupt(*a, **k):            # Ctrl-C arrives during step 17 (epoch 2)
        real_step(*a, **k)
        calls.append(1)
        if len(calls) == 17:
            broken.stop_signal = signal.SIGINT
    broken.opt.step = step_then_interrupt
    assert broken.run() is False
    assert (broken.epoch, broken.step) == (1, 5)

    resumed = make_trainer(mnist, tmp_path / "broken")
    restore(resumed)
    assert resumed.run()
    for k in whole.model.params:
        np.testing.assert_array_equal(resumed.model.params[k], whole.model.params[k], err_msg=k)
    for a, b in zip(resumed.history, whole.history, strict=True):
        assert (a["loss"], a["val_acc"]) == (b["loss"], b["val_acc"])


def test_a_failed_write_keeps_the_previous_checkpoint(mnist, tmp_path, monkeypatch):
    trainer = make_trainer(mnist, tmp_path, epochs=1)
    trainer.run()
    before = load_checkpoint(trainer.checkpoint_path)[0]

    def dies_mid_write(f, **contents):
        f.write(b"PK\x03\x04 half a zip")
        raise OSError("disk full")
    monkeypatch.setattr(checkpoint.np, "savez", dies_mid_write)
    trainer.tcfg.epochs = 2
    with pytest.raises(OSError, match="disk full"):
        trainer.run()
    after = load_checkpoint(trainer.checkpoint_path)[0]      # still the epoch-1 checkpoint
    for k in before:
        np.testing.assert_array_equal(before[k], after[k])


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(mnist, tmp_path):
    trainer = make_trainer(mnist, tmp_path, epochs=1)
    trainer.run()
    trainer.tcfg.epochs = 2
    trainer.model.params["out.b"][0] = np.nan                 # poison the model
    with pytest.raises(TrainingDiverged, match="loss became nan at epoch 2, step 1"):
        trainer.run()
    params, meta, _, _ = load_checkpoint(trainer.checkpoint_path)
    assert meta["epoch"] == 1 and np.isfinite(params["out.b"]).all()


def test_checkpoint_round_trip_and_bad_files(tmp_path):
    path = tmp_path / "c.npz"
    params = {"a.W": np.arange(6.0).reshape(2, 3)}
    save_checkpoint(path, params, {"epoch": 4})
    loaded, meta, _, _ = load_checkpoint(path)
    np.testing.assert_array_equal(loaded["a.W"], params["a.W"])
    assert meta["epoch"] == 4

    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(path.read_bytes()[:100])
    foreign = tmp_path / "foreign.npz"
    np.savez(foreign, x=np.zeros(3))
    for bad, message in [(tmp_path / "missing.npz", "no checkpoint"),
                         (truncated, "not a readable checkpoint"),
                         (foreign, "not a gr-numpy checkpoint")]:
        with pytest.raises(CheckpointError, match=message) as info:
            load_checkpoint(bad)
        assert "\n" not in str(info.value)

    old = tmp_path / "old.npz"
    save_checkpoint(old, params, {})
    with np.load(old) as npz:
        contents = dict(npz)
    meta = json.loads(str(contents["meta"]))
    meta["version"] = 99
    contents["meta"] = np.array(json.dumps(meta))
    np.savez(old, **contents)
    with pytest.raises(CheckpointError, match="version 99"):
        load_checkpoint(old)
    with pytest.raises(CheckpointError, match="does not match"):
        load_model(path)                                       # no model config inside


# --------------------------------------------------------------------- bad input
# Every bad flag, path and file of every tool: tests/test_robustness.py.


def test_resuming_a_checkpoint_without_a_training_position_is_a_clear_error(mnist, tmp_path):
    trainer = make_trainer(mnist, tmp_path)
    save_checkpoint(trainer.checkpoint_path, trainer.model.params,
                    {"model": trainer.mcfg.to_dict()})             # a model only, as for the demo
    with pytest.raises(ValueError, match="not a training position") as info:
        restore(trainer)
    assert "\n" not in str(info.value)


@pytest.fixture(scope="module")
def small_run(mnist_dir, tmp_path_factory):
    """A one-epoch routed run of train.py, for the resume checks."""
    out = tmp_path_factory.mktemp("small") / "run"
    result = run_train(*SMALL_FLAGS, "--out", str(out), "--data-dir", str(mnist_dir))
    assert result.returncode == 0, result.stderr
    return out


SMALL_FLAGS = ("--hidden", "16", "--epochs", "1", "--train-subset", "500", "--val-size", "100",
               "--threads", "1", "--no-figures")


@pytest.mark.parametrize("flags, message", [
    (("--no-routing",), "trained with no --no-routing, this command passes it"),
    (("--lr", "0.002"), "trained with --lr 0.001, this command gives --lr 0.002"),
    (("--hidden", "8"), "trained with --hidden 16, this command gives --hidden 8"),
    (("--routing", "halves"), "trained with --routing one-per-digit, this command gives "
                              "--routing halves"),
    (("--preset", "style"), "trained with --kl-weight 0.5, this command gives --kl-weight 0.25"),
    (("--kl-warmup", "2"), "trained with --kl-warmup 0, this command gives --kl-warmup 2"),
    (("--style", "2"), "trained with --style 0, this command gives --style 2"),
    (("--seed", "4"), "--seed 0, this command gives --seed 4"),
    (("--weight-decay-form", "coupled"), "trained with --weight-decay-form decoupled, this "
                                         "command gives --weight-decay-form coupled"),
    (("--weight-decay", "0.001"), "trained with --weight-decay 0.0, this command gives "
                                  "--weight-decay 0.001"),
])
def test_a_resume_that_contradicts_its_run_is_refused_in_one_line(small_run, mnist_dir, flags,
                                                                   message):
    args = list(SMALL_FLAGS)
    if "--hidden" in flags:
        del args[0:2]
    result = run_train(*args, *flags, "--resume", "--out", str(small_run),
                       "--data-dir", str(mnist_dir))
    assert result.returncode == 2
    assert message in result.stderr and result.stderr.count("\n") == 1, result.stderr


def test_a_resume_may_add_epochs(small_run, mnist_dir, tmp_path):
    args = [a if a != "1" else "2" for a in SMALL_FLAGS]           # --epochs 2
    result = run_train(*args, "--resume", "--out", str(small_run), "--data-dir", str(mnist_dir))
    assert result.returncode == 0, result.stderr
    assert "resume | from epoch 2" in result.stdout and "epoch  2 | loss" in result.stdout


# --------------------------------------------------------------------- style dims
def test_a_style_run_trains_resumes_and_scores_only_the_digit_dims(mnist, tmp_path):
    cfg = VAEConfig(enc_hidden=(32,), dec_hidden=(32,), style=3, style_kl_weight=1.5)
    trainer = make_trainer(mnist, tmp_path, epochs=1, config=cfg)
    assert trainer.run()
    model = load_model(trainer.checkpoint_path)                # the config travels with it
    assert model.config.style == 3 and model.config.style_kl_weight == 1.5
    assert model.routing.free_dims == 3
    again = make_trainer(mnist, tmp_path, epochs=2, config=cfg)
    restore(again)
    assert again.run() and again.epoch == 2
    # The read-out is over the ten digit dims' groups: a huge style mean never wins it.
    images, labels = mnist[2], mnist[3]
    before = model.score(images, labels)
    model.params["mu.b"][10:] += 1e4
    after = model.score(images, labels)
    assert after["acc"] == before["acc"] and np.array(after["confusion"]).shape == (10, 10)


@pytest.mark.parametrize("make, K, G", [(two_per_digit, 20, 10), (halves, 32, 2)])
def test_other_routings_train_store_their_routing_and_score_over_their_groups(mnist, tmp_path,
                                                                              make, K, G):
    cfg = VAEConfig(enc_hidden=(32,), dec_hidden=(32,), latent=K)
    trainer = make_trainer(mnist, tmp_path, epochs=1, config=cfg, routing=make())
    assert trainer.run()
    model = load_model(trainer.checkpoint_path)
    assert model.routing == make() and model.config.latent == K
    test = model.score(mnist[2], mnist[3])
    assert np.array(test["confusion"]).shape == (10, G) and len(test["per_class_acc"]) == 10
    answers = model.routing.read_group(model.encode(to_rows(mnist[2])))
    assert test["acc"] == pytest.approx(np.mean(answers == model.routing.label_group[mnist[3]]))


def test_a_checkpoint_from_before_routings_were_stored_loads_and_resumes(mnist, tmp_path):
    """Older checkpoints: no routing (it was one dim per digit), no style fields, the training
    flag called "routing" and the epoch's sums a list. They load as today's routing."""
    trainer = make_trainer(mnist, tmp_path, epochs=1)
    trainer.run()
    params, meta, adam, arrays = load_checkpoint(trainer.checkpoint_path)
    del meta["routing"]
    for key in ("style", "style_kl_weight"):
        del meta["model"][key]
    meta["train"]["routing"] = meta["train"].pop("routed")
    meta["sums"] = [meta["totals"][k] for k in ("loss", "recon", "kl", "images")]
    del meta["totals"]
    save_checkpoint(trainer.checkpoint_path, params, meta, adam, arrays)
    model = load_model(trainer.checkpoint_path)
    assert model.config.style == 0 and model.config == SMALL
    assert isinstance(model, VAE) and model.routing == one_per_digit()
    resumed = make_trainer(mnist, tmp_path, epochs=2)
    restore(resumed)
    assert resumed.run()


# --------------------------------------------------------------------- the weight decay's form
@pytest.mark.parametrize("flags, wd, form", [
    ((), 5e-5, "coupled"),                                        # the preset's (the paper's)
    (("--weight-decay-form", "decoupled"), 5e-5, "decoupled"),
    (("--weight-decay", "5e-4", "--weight-decay-form", "decoupled"), 5e-4, "decoupled"),
])
def test_the_weight_decay_flags_reach_the_optimiser(mnist, flags, wd, form):
    script = train_script()
    args = script.build_parser().parse_args(["--preset", "halves", *flags])
    _, _, model_cfg, train_cfg = script.recipe(args)
    assert (train_cfg.weight_decay, train_cfg.weight_decay_form) == (wd, form)
    trainer = Trainer(model_cfg, train_cfg, *mnist, log=lambda line: None)
    assert (trainer.opt.weight_decay, trainer.opt.weight_decay_form) == (wd, form)


def coupled_trainer(mnist, out, epochs, form="coupled"):
    return make_trainer(mnist, out, epochs=epochs, weight_decay=0.01, weight_decay_form=form)


def test_a_coupled_run_stores_its_form_and_resumes_to_the_same_numbers(mnist, tmp_path):
    whole = coupled_trainer(mnist, tmp_path / "whole", epochs=2)
    assert whole.run()
    half = coupled_trainer(mnist, tmp_path / "half", epochs=1)
    assert half.run()
    meta = load_checkpoint(half.checkpoint_path)[1]
    assert meta["train"]["weight_decay_form"] == "coupled"
    resumed = coupled_trainer(mnist, tmp_path / "half", epochs=2)
    restore(resumed)
    assert resumed.opt.weight_decay_form == "coupled"        # rebuilt as stored, not the default
    assert resumed.run()
    for k in whole.model.params:
        np.testing.assert_array_equal(resumed.model.params[k], whole.model.params[k], err_msg=k)
    # Negative control: the same run, decayed decoupled, ends elsewhere.
    other = coupled_trainer(mnist, tmp_path / "other", epochs=2, form="decoupled")
    assert other.run()
    assert max(np.abs(other.model.params[k] - whole.model.params[k]).max()
               for k in whole.model.params) > 1e-4


def test_a_resume_with_the_other_weight_decay_form_is_refused(mnist, tmp_path):
    coupled_trainer(mnist, tmp_path, epochs=1).run()
    again = coupled_trainer(mnist, tmp_path, epochs=2, form="decoupled")
    with pytest.raises(training.ResumeMismatch) as info:
        restore(again)
    assert (info.value.field, info.value.stored, info.value.given) == \
        ("train.weight_decay_form", "coupled", "decoupled")


def test_a_checkpoint_from_before_the_weight_decay_form_resumes_as_decoupled(mnist, tmp_path):
    """A run saved before the coupled form existed decayed decoupled; it resumes so, and a
    resume asking for coupled is refused."""
    trainer = coupled_trainer(mnist, tmp_path, epochs=1, form="decoupled")
    trainer.run()
    params, meta, adam, arrays = load_checkpoint(trainer.checkpoint_path)
    del meta["train"]["weight_decay_form"]
    save_checkpoint(trainer.checkpoint_path, params, meta, adam, arrays)
    stored = load_checkpoint(trainer.checkpoint_path)[1]["train"]
    assert TrainConfig(**stored).weight_decay_form == "decoupled"
    coupled = coupled_trainer(mnist, tmp_path, epochs=2)
    with pytest.raises(training.ResumeMismatch, match="weight_decay_form"):
        restore(coupled)
    resumed = coupled_trainer(mnist, tmp_path, epochs=2, form="decoupled")
    restore(resumed)
    assert resumed.opt.weight_decay_form == "decoupled" and resumed.run()


def test_an_old_checkpoint_whose_code_is_not_ten_dims_is_refused_in_one_line(tmp_path):
    """Before routings were stored, --no-routing allowed any width; such a code names no digit."""
    cfg = VAEConfig(enc_hidden=(8,), dec_hidden=(8,), latent=7)
    model = VAE(cfg, rng=np.random.default_rng(0))
    save_checkpoint(tmp_path / "c.npz", model.params, {"model": cfg.to_dict()})
    with pytest.raises(CheckpointError, match="7 latent dims, which name no digit") as info:
        load_model(tmp_path / "c.npz")
    assert "\n" not in str(info.value)


def train_script():
    """train.py as a module, to call its functions."""
    import importlib.util
    spec = importlib.util.spec_from_file_location("train_script", ROOT / "train.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    return script


def test_train_py_offers_what_the_library_offers():
    # train.py takes its choices from the library: every routing, schedule and decay form.
    from gr_numpy import adam, training
    from gr_numpy.routing import ROUTINGS
    parser = train_script().build_parser()
    choices = {a.dest: a.choices for a in parser._actions if a.choices}
    assert list(choices["routing"]) == list(ROUTINGS)
    assert tuple(choices["lr_schedule"]) == tuple(training.LR_SCHEDULES)
    assert tuple(choices["weight_decay_form"]) == tuple(adam.WEIGHT_DECAY_FORMS)
