"""The web page of `python demo.py --html`: its maths against NumPy, in a real headless browser.

The page is loaded from disk by headless Chromium with a test script added at its end, which
calls the page's hook `window.grNumpy` on codes and images, moves a slider through the DOM, and
writes what it saw into the page; `--dump-dom` hands that back. Without a browser the browser
tests skip with one line, unless GR_NUMPY_REQUIRE_BROWSER=1 (CI sets it), when they fail.
"""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from gr_numpy.data import load_mnist, to_rows
from gr_numpy.autoencoder import Autoencoder, AutoencoderConfig
from gr_numpy.model import VAE, VAEConfig
from gr_numpy.routing import ROUTINGS, halves
from gr_numpy.tools import webpage
from gr_numpy.checkpoint import save_checkpoint
from gr_numpy.tools.demo_app import code_stats, slider_names

ROOT = Path(__file__).resolve().parents[1]
BROWSERS = ("chromium-headless-shell", "chromium", "chromium-browser", "google-chrome")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--no-first-run", "--disable-sync", "--hide-scrollbars"]

# Runs first in the page: records every uncaught error and console.error.
ERROR_TRAP = """<script>
window.__errors = [];
window.addEventListener("error", (e) => window.__errors.push(String(e.message)));
const __consoleError = console.error;
console.error = (...a) => { window.__errors.push(a.join(" ")); __consoleError(...a); };
</script>"""

# Runs last: the hook on the test's codes and images, a slider moved through the DOM.
PROBE = """<script>
(() => {
  const t = %s, g = window.grNumpy, out = document.getElementById("output");
  const pixels = () => Array.from(out.getContext("2d").getImageData(0, 0, 28, 28).data);
  const result = {firstDrawMs: g.firstDrawMs};
  result.decoded = t.codes.map((z) => g.decode(z));
  result.certificates = g.certificate ? t.codes.map((z) => [0, 1].map((k) => g.certificate(z, k))) : null;
  result.encoded = t.images.map((x) => g.encode(x));
  g.setCode(t.codes[0]);
  const before = pixels(), slider = document.getElementById("z" + t.slider);
  slider.value = t.value;
  slider.dispatchEvent(new Event("input"));
  const after = pixels();
  result.changedPixels = before.filter((v, i) => v !== after[i]).length;
  result.updateMs = g.lastUpdateMs;
  result.sliders = document.querySelectorAll("input[type=range]").length;
  const pad = document.getElementById("pad"), box = pad.getBoundingClientRect();
  const at = (x, y) => ({clientX: box.left + x * box.width, clientY: box.top + y * box.height,
                         pointerId: 1, bubbles: true});
  pad.dispatchEvent(new PointerEvent("pointerdown", at(0.5, 0.2)));    // a stroke: a "1"
  for (let i = 1; i <= 10; i++) pad.dispatchEvent(new PointerEvent("pointermove", at(0.5, 0.2 + 0.06 * i)));
  pad.dispatchEvent(new PointerEvent("pointerup", at(0.5, 0.8)));
  result.drawnStatus = document.getElementById("status").textContent;
  result.drawnInk = Array.from(document.getElementById("input").getContext("2d")
    .getImageData(0, 0, 28, 28).data).filter((v, i) => i %% 4 === 0 && v > 0).length;
  result.legends = Array.from(document.querySelectorAll("legend"), (l) => l.textContent);
  result.errors = window.__errors;
  const pre = document.createElement("pre");
  pre.id = "probe-result";
  pre.textContent = JSON.stringify(result);
  document.body.appendChild(pre);
})();
</script>"""


def find_browser():
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    return None


@pytest.fixture(scope="module")
def browser():
    path = find_browser()
    if path is None:
        message = f"no headless browser ({', '.join(BROWSERS)}) on PATH"
        if os.environ.get("GR_NUMPY_REQUIRE_BROWSER") == "1":
            pytest.fail(message + ", and GR_NUMPY_REQUIRE_BROWSER=1 requires one")
        pytest.skip(message + "; install chromium-headless-shell to run the page tests")
    return path


def open_in_browser(browser, page, probe_input, tmp_path):
    """Load a copy of the page with the error trap and the probe; -> the probe's result."""
    html = Path(page).read_text(encoding="utf-8")
    html = html.replace("<head>", "<head>" + ERROR_TRAP, 1)
    html = html.replace("</body>", PROBE % json.dumps(probe_input) + "</body>", 1)
    probed = tmp_path / "probed.html"
    probed.write_text(html, encoding="utf-8")
    result = subprocess.run([browser, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}",
                             "--virtual-time-budget=10000", "--dump-dom", probed.as_uri()],
                            capture_output=True, text=True, timeout=120)
    match = re.search(r'<pre id="probe-result">(.*?)</pre>', result.stdout, flags=re.S)
    assert match, f"the probe did not report; browser stderr: {result.stderr[-2000:]}"
    return json.loads(match.group(1).replace("&amp;", "&").replace("&lt;", "<")
                      .replace("&gt;", ">").replace("&quot;", '"'))


def small_model(routing_name, style=0, style_input="outer", seed=0):
    routing = ROUTINGS[routing_name](style=style)
    cfg = VAEConfig(enc_hidden=(48, 24), dec_hidden=(24, 48), latent=routing.routed_dims,
                    style=style, style_input=style_input, dec_hidden_bias=style_input == "shared")
    model = VAE(cfg, rng=np.random.default_rng(seed), routing=routing)
    for k in model.params:                      # larger weights: the codes and images vary
        model.params[k] *= 3
    return model


@pytest.fixture(scope="module")
def test_set(mnist_dir):
    images, labels = load_mnist("test", mnist_dir)
    return images[:2000], labels[:2000]


def write_small_page(model, test_set, path):
    images, labels = test_set
    lo, hi, prototypes = code_stats(model, images, labels)
    chosen = webpage.pick_images(images, labels, 5)
    webpage.write_page(path, model, images[chosen], labels[chosen], lo, hi, prototypes,
                       slider_names(model.routing))
    return lo, hi


def float64_twin(model):
    """The page's model (quantized weights) in float64: the reference the page must match."""
    m = webpage.page_model(model)
    params = {k: p.astype(np.float64) for k, p in m.params.items()}
    if m.kind == "autoencoder":
        fields = {k: v for k, v in m.config.to_dict().items() if k != "kind"}
        cfg = AutoencoderConfig(**{**fields, "dtype": "float64"})
        return Autoencoder(cfg, params=params, routing=m.routing)
    cfg = VAEConfig(**{**m.config.to_dict(), "dtype": "float64"})
    return VAE(cfg, params=params, routing=m.routing)


# ---------------------------------------------------------------- without a browser
def test_quantized_weights_are_within_half_a_step_and_columns_keep_their_scale():
    W = np.random.default_rng(0).normal(size=(30, 7)).astype(np.float32)
    W[:, 3] = 0.0                                          # an all-zero column survives
    q, scale = webpage.quantize(W)
    assert q.dtype == np.int8 and scale.shape == (7,)
    np.testing.assert_array_equal(np.abs(q).max(axis=0)[[0, 1, 2, 4, 5, 6]], 127)
    err = np.abs(q * scale - W)
    assert np.all(err <= scale / 2 + 1e-7)
    np.testing.assert_array_equal(q[:, 3], 0)


def test_the_page_is_one_file_with_no_request_to_the_network(test_set, tmp_path):
    page = tmp_path / "page.html"
    write_small_page(small_model("one-per-digit"), test_set, page)
    html = page.read_text()
    assert "/*MODEL-DATA*/" not in html and "window.grNumpy" in html
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)       # nothing fetched
    assert not re.search(r"\b(fetch|XMLHttpRequest|import\s*\()", html)


def test_demo_html_writes_a_page_and_reports_its_agreement(test_set, tmp_path, mnist_dir):
    model = small_model("halves", style=2)
    ckpt = tmp_path / "small.npz"
    save_checkpoint(ckpt, model.params, {"model": model.config.to_dict(),
                                         "routing": model.routing.to_dict()})
    env = dict(os.environ, MPLBACKEND="Agg")
    run = subprocess.run([sys.executable, str(ROOT / "demo.py"), "--checkpoint", str(ckpt),
                          "--data-dir", str(mnist_dir), "--html", str(tmp_path / "p.html")],
                         capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    assert run.returncode == 0, run.stderr
    assert re.search(r"wrote .*p\.html \(\d\.\d\d MB, 300 test digits\) \| on those digits: "
                     r"read-out [\d.]+% \(checkpoint [\d.]+%\)", run.stdout), run.stdout
    assert (tmp_path / "p.html").stat().st_size > 100_000


# ---------------------------------------------------------------- in the browser
CASES = [("one-per-digit", 0, "outer"), ("one-per-digit", 3, "outer"), ("two-per-digit", 0, "outer"),
         ("halves", 2, "outer"), ("one-per-digit", 2, "shared")]


@pytest.mark.parametrize("routing_name, style, style_input", CASES,
                         ids=[f"{r}-S{s}-{i}" for r, s, i in CASES])
def test_the_page_computes_what_numpy_computes(browser, test_set, tmp_path, routing_name, style,
                                                style_input):
    model = small_model(routing_name, style, style_input)
    page = tmp_path / "page.html"
    lo, hi = write_small_page(model, test_set, page)
    rng = np.random.default_rng(1)
    C = model.config.code_dim
    codes = rng.uniform(lo, hi, size=(4, C))
    codes[:, :model.config.latent] *= rng.uniform(size=(4, model.config.latent)) < 0.5  # some 0
    images = to_rows(test_set[0][:3]).astype(np.float64)
    slider = int(np.argmax(hi - lo))
    result = open_in_browser(browser, page, {"codes": codes.tolist(), "images": images.tolist(),
                                             "slider": slider, "value": float(hi[slider])},
                             tmp_path)
    assert result["errors"] == []
    twin = float64_twin(model)
    np.testing.assert_allclose(result["decoded"], twin.decode(codes), rtol=0, atol=1e-4)
    np.testing.assert_allclose(result["encoded"], twin.encode(images), rtol=0, atol=1e-4)
    assert result["changedPixels"] > 0                      # moving a slider redraws the digit
    assert result["drawnStatus"].startswith("read: ")       # a drawing is encoded and read
    assert 20 < result["drawnInk"] < 300                     # a stroke, inked as MNIST's are
    assert result["sliders"] == C
    groups = model.routing.groups
    assert len(result["legends"]) == (1 if all(len(g) == 1 for g in groups) else len(groups)) \
        + (1 if style else 0)


def test_the_autoencoders_page_computes_what_numpy_computes(browser, test_set, tmp_path):
    """The paper's model: [-1, 1] pixels, a bias-free code, and both certificates' drawings."""
    cfg = AutoencoderConfig(enc_hidden=(40, 20), dec_hidden=(20, 40), code=8)
    model = Autoencoder(cfg, rng=np.random.default_rng(0), routing=halves(half=4))
    page = tmp_path / "page.html"
    lo, hi = write_small_page(model, test_set, page)
    codes = np.random.default_rng(1).uniform(lo, hi, size=(3, 8))
    images = to_rows(test_set[0][:3]).astype(np.float64)
    result = open_in_browser(browser, page, {"codes": codes.tolist(), "images": images.tolist(),
                                             "slider": 0, "value": float(hi[0])}, tmp_path)
    assert result["errors"] == []
    twin = float64_twin(model)
    np.testing.assert_allclose(result["decoded"], (twin.decode(codes) + 1) / 2, rtol=0, atol=1e-4)
    np.testing.assert_allclose(result["encoded"], twin.encode(2 * images - 1), rtol=0, atol=1e-4)
    for g in (0, 1):
        np.testing.assert_allclose([c[g] for c in result["certificates"]],
                                   (twin.decode_certificate(codes, g) + 1) / 2, rtol=0, atol=1e-4)
    assert result["changedPixels"] > 0 and result["sliders"] == 8
    assert result["legends"] == ["digits 0-4", "digits 5-9"]
