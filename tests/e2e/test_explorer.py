"""End-to-end: the explorer page in headless Chromium (Playwright) against the real service of
the session (TorchServe + gateway from conftest's ``server``), with our explorer server started
in front of it. What the page draws is compared with the API's own answer to the same request;
without a valid key the page and the server get nothing. Screenshots: the test's tmp dir and
run/explorer-screenshots/ (gitignored)."""

from __future__ import annotations

import base64
import io
import json
import os
import pathlib
import shutil
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import requests
from PIL import Image

from service import wire
from tests.e2e.conftest import BUNDLED_STORE, ROOT

sync_api = pytest.importorskip("playwright.sync_api", reason="the browser suite needs playwright")
expect = sync_api.expect

pytestmark = pytest.mark.e2e

SHOTS = ROOT / "run" / "explorer-screenshots"
SLOW = 240_000  # ms: a loaded 2-core machine, resnet18 explanations


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def explorer(server, tmp_path_factory) -> str:
    """``python -m service.explorer`` in front of the session's service; its base URL."""
    port = free_port()
    log = tmp_path_factory.mktemp("explorer") / "explorer.log"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "service.explorer", "--listen", f"127.0.0.1:{port}",
           "--inference-url", server.inference_url,
           "--gateway", f"127.0.0.1:{server.ports['gateway']}",
           "--examples-dir", str(BUNDLED_STORE)]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=out, stdin=subprocess.DEVNULL, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                requests.get(f"{url}/", timeout=2)
                break
            except requests.ConnectionError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"explorer did not start: {log.read_text()}") from None
                time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=20)


@pytest.fixture(scope="module")
def browser():
    exe = os.environ.get("EXPLORER_CHROMIUM") or shutil.which("chromium") or None
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=exe, args=["--no-sandbox"])
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser):
    # No bypass_csp: the page must work under its own Content-Security-Policy.
    ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
    pg = ctx.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.on("console", lambda m: errors.append(m.text)
          if m.type == "error" and "Content Security Policy" in m.text else None)
    pg.sent = []  # the explanation requests the page sent: (model, body)
    pg.on("request", lambda r: pg.sent.append((r.url.split("/")[-2], json.loads(r.post_data)))
          if r.url.endswith("/explain") and r.method == "POST" else None)
    yield pg
    ctx.close()
    assert errors == [], f"errors in the page (or CSP violations): {errors}"


def connect(page, url: str, key: str | None) -> None:
    page.goto(url)
    expect(page.locator("#key-state")).to_have_attribute("data-state", "needed")
    page.fill("#key-input", key or "")
    page.click("#key-form button")


def open_model(page, model: str) -> None:
    page.click(f"#models .model[data-model={model}]")
    expect(page.locator("body")).to_have_attribute("data-model", model)


def wait_panels(page, n: int = 2, timeout: float = SLOW) -> None:
    expect(page.locator(".panel[data-state=done]")).to_have_count(n, timeout=timeout)


def rerun(page, action, accept=lambda body: True) -> dict:
    """Do ``action`` and wait until the page sent an explanation request that ``accept``s and
    every panel has its answer; returns that request's body."""
    def wanted(r) -> bool:
        return (r.url.endswith("/explain") and r.method == "POST"
                and accept(json.loads(r.post_data)))
    with page.expect_request(wanted, timeout=SLOW) as req:
        action()
    wait_panels(page, page.locator(".panel").count())
    return json.loads(req.value.post_data)


def api_answer(server, model: str, body: dict) -> dict:
    r = requests.post(f"{server.inference_url}/explanations/{model}", json=body,
                      headers=server.headers(), timeout=300)
    assert r.status_code == 200, r.text
    return r.json()


def sent_body(page, model: str, algorithm: str) -> dict:
    bodies = [b for m, b in page.sent if m == model and b["algorithm"] == algorithm]
    assert bodies, f"the page sent no {algorithm} request for {model}"
    return bodies[-1]


def shot(page, tmp_path: pathlib.Path, name: str) -> pathlib.Path:
    path = tmp_path / f"explorer-{name}.png"
    page.screenshot(path=str(path), full_page=True)
    SHOTS.mkdir(parents=True, exist_ok=True)
    shutil.copy(path, SHOTS / path.name)
    return path


def panel_algorithms(page) -> list[str]:
    return page.eval_on_selector_all(".panel select.algorithm", "els => els.map(e => e.value)")


# -- what the page draws equals what the API answers -----------------------------------------

def check_bars(page, server, model: str, feature_names: list[str]) -> list[dict]:
    answers = []
    for i, algorithm in enumerate(panel_algorithms(page)):
        answer = api_answer(server, model, sent_body(page, model, algorithm))
        expl = answer["explanations"][0]
        attr = wire.tensor_from_proto(wire.response_from_json(json.dumps(answer))
                                      .explanations[0].attributions, "a").reshape(-1)
        panel = page.locator(".panel").nth(i)
        bars = panel.locator("rect.bar")
        expect(bars).to_have_count(len(feature_names))
        drawn = dict(bars.evaluate_all(
            "els => els.map(e => [e.dataset.feature, Number(e.dataset.value)])"))
        assert sorted(drawn) == sorted(feature_names)
        want = dict(zip(feature_names, attr.tolist()))
        for name in feature_names:
            assert np.sign(drawn[name]) == np.sign(want[name]), (algorithm, name)
            assert drawn[name] == pytest.approx(want[name], rel=1e-5, abs=1e-9), (algorithm, name)
        # bars right of the axis are the positive ones
        signs = bars.evaluate_all("els => els.map(e => e.classList.contains('pos') ? 1 : "
                                  "e.classList.contains('neg') ? -1 : 0)")
        values = bars.evaluate_all("els => els.map(e => Number(e.dataset.value))")
        assert signs == [int(np.sign(v)) for v in values]
        reasons = panel.locator(".reasons li").all_inner_texts()
        assert reasons == list(expl.get("reasons", [])), algorithm
        approx = expl.get("approximationError")
        if approx is not None:
            assert panel.locator("dd.approx").inner_text() != ""
        answers.append(answer)
    return answers


def test_digits_two_algorithms_as_overlays(page, explorer, server, tmp_path):
    connect(page, explorer, server.key())
    open_model(page, "digits")
    wait_panels(page)
    assert panel_algorithms(page) == ["IntegratedGradients", "Saliency"]
    for i, algorithm in enumerate(panel_algorithms(page)):
        answer = api_answer(server, "digits", sent_body(page, "digits", algorithm))
        panel = page.locator(".panel").nth(i)
        canvas = panel.locator("canvas.overlay")
        size = canvas.evaluate("c => [c.width, c.height]")
        assert size == [28, 28]
        lit = canvas.evaluate("""c => { const d = c.getContext('2d').getImageData(0, 0, c.width,
            c.height).data; let n = 0; for (let i = 0; i < d.length; i += 4)
            if (Math.abs(d[i] - d[i + 2]) > 40) n++; return n; }""")
        assert lit > 20, "the overlay shows no attribution colour"
        heat = base64.b64decode(answer["explanations"][0]["heatmapPng"])
        want = Image.open(io.BytesIO(heat)).size
        img = panel.locator("img.heatmap")
        expect(img).to_be_visible()
        got = img.evaluate("i => [i.complete, i.naturalWidth, i.naturalHeight]")
        assert got == [True, *want]
        label = answer["prediction"]["label"]
        assert panel.locator(".explained b").inner_text() == answer["explanations"][0]["label"]
    assert page.locator("#predicted-label").inner_text() == label
    shot(page, tmp_path, "digits")
    # an uploaded picture (56x56, the service resizes it) is what the panels explain next
    yy, xx = np.mgrid[0:56, 0:56]
    ring = (np.abs(np.hypot(xx - 28, yy - 28) - 16) < 4).astype(np.uint8) * 255   # a "0"
    upload = tmp_path / "ring.png"
    Image.fromarray(ring, "L").save(upload)
    sent = rerun(page, lambda: page.set_input_files("#upload", str(upload)))
    assert base64.b64decode(sent["inputs"]["image"]) == upload.read_bytes()
    expect(page.locator("#input-title")).to_have_text("Input: your own")
    for i in range(2):
        canvas = page.locator(".panel").nth(i).locator("canvas.overlay")
        assert canvas.evaluate("c => [c.width, c.height]") == [28, 28]


def test_breast_cancer_bars_match_the_api(page, explorer, server, tmp_path):
    connect(page, explorer, server.key())
    open_model(page, "breast_cancer")
    wait_panels(page)
    names = server.models["breast_cancer"]["input"]["feature_names"]
    check_bars(page, server, "breast_cancer", names)
    # editing a field re-predicts and re-explains that input
    field = page.locator(".tabular-editor input[name='worst radius']")
    field.fill("30")
    body = rerun(page, lambda: field.press("Enter"),
                 lambda b: b["inputs"]["tabular"]["features"].get("worst radius") == 30)
    expect(page.locator("#input-title")).to_have_text("Input: your own")
    assert len(body["inputs"]["tabular"]["features"]) == len(names)
    check_bars(page, server, "breast_cancer", names)
    shot(page, tmp_path, "breast_cancer")


def test_recommender_user_by_ticking_titles(page, explorer, server, tmp_path):
    connect(page, explorer, server.key())
    open_model(page, "recommender")
    wait_panels(page)
    names = server.models["recommender"]["input"]["feature_names"]
    check_bars(page, server, "recommender", names)
    # a user who watched Alien yesterday: "because you ..." reasons come from the API
    ticked = page.locator(".titles input[type=checkbox]:checked")
    while ticked.count():
        ticked.first.uncheck()

    def only_alien(b) -> bool:
        feats = b["inputs"]["tabular"]["features"]
        return [k for k in feats if k.startswith(("watched:", "recent:"))] == [
            "watched:Alien", "recent:Alien"]

    body = rerun(page, lambda: page.check(".titles input[name='watched:Alien']"), only_alien)
    assert body["inputs"]["tabular"]["features"]["watched:Alien"] == 1
    answers = check_bars(page, server, "recommender", names)
    assert any(answers[0]["explanations"][0].get("reasons", []))
    shot(page, tmp_path, "recommender")


def test_resnet18_shows_a_pending_state(page, explorer, server):
    connect(page, explorer, server.key())
    open_model(page, "resnet18")
    expect(page.locator(".badge.warn")).to_contain_text("load test only")
    panel = page.locator(".panel").first
    panel.locator("button.run").click()
    expect(panel).to_have_attribute("data-state", "pending")
    expect(panel.locator(".status .spinner")).to_be_visible()
    expect(panel.locator(".status")).to_contain_text("running")
    expect(panel).to_have_attribute("data-state", "done", timeout=SLOW)
    assert panel.locator("canvas.overlay").evaluate("c => [c.width, c.height]") == [224, 224]


def test_filter_examples_by_predicted_and_true_class(page, explorer, server):
    connect(page, explorer, server.key())
    open_model(page, "digits")
    examples = json.loads((BUNDLED_STORE / "digits" / "examples.json").read_text())["examples"]
    gallery = page.locator("#gallery .example")
    expect(gallery).to_have_count(len(examples))
    expect(page.locator("#gallery .example[data-pred='']")).to_have_count(0, timeout=SLOW)
    predicted = {}
    for ex in examples:
        r = requests.post(f"{server.inference_url}/predictions/digits", json={"inputs": ex["inputs"]},
                          headers=server.headers(), timeout=60)
        predicted[ex["id"]] = r.json()["prediction"].get("index", 0)

    def shown() -> list[str]:
        return gallery.evaluate_all("els => els.map(e => e.dataset.id)")

    page.select_option("#filter-true", "3")
    assert sorted(shown()) == sorted(e["id"] for e in examples if e["true_index"] == 3)
    page.select_option("#filter-true", "any")
    page.select_option("#filter-pred", "3")
    assert sorted(shown()) == sorted(i for i, p in predicted.items() if p == 3)
    page.select_option("#filter-pred", "any")
    page.check("#filter-wrong")
    wrong = sorted(e["id"] for e in examples if predicted[e["id"]] != e["true_index"])
    assert sorted(shown()) == wrong
    if not wrong:
        expect(page.locator("#gallery .empty")).to_be_visible()


def test_text_model_filters_by_input_kind_and_wrong_answers(page, explorer, server):
    connect(page, explorer, server.key())
    open_model(page, "tinylm")
    examples = json.loads((BUNDLED_STORE / "tinylm" / "examples.json").read_text())["examples"]
    gallery = page.locator("#gallery .example")
    expect(gallery).to_have_count(len(examples))
    expect(page.locator("#filter-pred")).to_have_count(0)   # no classes to filter by
    expect(page.locator("#gallery .example .p", has_text="…")).to_have_count(0, timeout=SLOW)

    def shown() -> list[str]:
        return gallery.evaluate_all("els => els.map(e => e.dataset.id)")

    page.select_option("#filter-kind", "template")
    assert sorted(shown()) == sorted(e["id"] for e in examples if "template" in e["inputs"])
    page.select_option("#filter-kind", "text")
    assert sorted(shown()) == sorted(e["id"] for e in examples if "text" in e["inputs"])
    page.select_option("#filter-kind", "any")
    generated = {}
    for ex in examples:
        r = requests.post(f"{server.inference_url}/predictions/tinylm",
                          json={"inputs": ex["inputs"]}, headers=server.headers(), timeout=60)
        generated[ex["id"]] = r.json()["prediction"]["label"]
    page.check("#filter-wrong")
    wrong = sorted(i for i, g in generated.items()
                   if not g.strip().startswith(next(e for e in examples if e["id"] == i)
                                               ["true_label"].strip()))
    assert sorted(shown()) == wrong
    assert len(wrong) < len(examples)   # the bundled model answers its probes


def test_view_is_shared_by_its_url(page, explorer, server, browser):
    connect(page, explorer, server.key())
    open_model(page, "breast_cancer")
    wait_panels(page)
    second = page.locator(".panel").nth(1).locator("select.algorithm")
    rerun(page, lambda: second.select_option("DeepLift"), lambda b: b["algorithm"] == "DeepLift")
    steps = page.locator(".panel").nth(0).locator("input[data-param=n_steps]")
    steps.fill("8")
    rerun(page, lambda: steps.press("Enter"), lambda b: b.get("params", {}).get("n_steps") == 8)
    rerun(page, lambda: page.locator("#gallery .example").nth(3).click())
    url = page.url
    assert "model=breast_cancer" in url and server.key() not in url
    ctx = browser.new_context(viewport={"width": 1200, "height": 900})
    other = ctx.new_page()
    try:
        connect(other, url, server.key())
        expect(other.locator("body")).to_have_attribute("data-model", "breast_cancer")
        expect(other.locator(".panel[data-state=done]")).to_have_count(2, timeout=SLOW)
        assert panel_algorithms(other) == ["IntegratedGradients", "DeepLift"]
        assert other.locator("input[data-param=n_steps]").input_value() == "8"
        assert other.locator("#input-title").inner_text() == page.locator("#input-title").inner_text()
    finally:
        ctx.close()


def test_api_errors_are_shown_with_their_field(page, explorer, server):
    connect(page, explorer, server.key())
    open_model(page, "breast_cancer")
    wait_panels(page)
    steps = page.locator(".panel").nth(0).locator("input[data-param=n_steps]")
    err = page.locator(".panel").nth(0).locator(".error")
    # the panel re-renders its form when its first answer arrives: an edit made to the form
    # being replaced is lost, so edit again until the refused request is on screen
    for _ in range(5):
        steps.fill("100000")
        steps.press("Enter")
        try:
            expect(err).to_be_visible(timeout=SLOW / 5)
            break
        except AssertionError:
            continue
    expect(err).to_be_visible(timeout=SLOW)
    assert err.get_attribute("data-field") == "params.n_steps"
    assert err.get_attribute("data-code") == "LIMIT_EXCEEDED"
    expect(err.locator("code.field")).to_have_text("params.n_steps")


# -- no key, no data ------------------------------------------------------------------------

@pytest.mark.parametrize("key", [None, "wrong-key"])
def test_the_page_gets_nothing_without_a_valid_key(page, explorer, server, key):
    answers = []
    page.on("response", lambda r: answers.append((r.url, r.status))
            if "/api/" in r.url else None)
    connect(page, explorer, key)
    state = "needed" if key is None else "refused"
    expect(page.locator("#key-state")).to_have_attribute("data-state", state)
    expect(page.locator("#app")).to_be_hidden()
    expect(page.locator("#banner")).to_contain_text("key")
    assert page.locator("#gallery .example").count() == 0
    assert page.locator(".panel").count() == 0
    assert answers and all(status == 401 for _, status in answers), answers


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong-key"}])
def test_the_server_serves_nothing_without_a_valid_key(explorer, server, headers):
    body = {"inputs": {"tabular": {"features": {"mean radius": 14.0}}}}
    calls = [("get", "/api/session"), ("get", "/api/models"),
             ("get", "/api/models/breast_cancer"), ("get", "/api/models/digits/examples"),
             ("post", "/api/models/breast_cancer/predict"),
             ("post", "/api/models/breast_cancer/explain")]
    for method, path in calls:
        r = getattr(requests, method)(explorer + path, headers=headers, timeout=60,
                                      **({"json": body} if method == "post" else {}))
        assert r.status_code == 401, (path, r.text)
        assert r.json()["code"] == "KEY_REFUSED", path
        assert set(r.json()) == {"code", "field", "message"}
    good = {"Authorization": f"Bearer {server.key()}"}
    r = requests.get(explorer + "/api/models/digits/examples", headers=good, timeout=60)
    assert r.status_code == 200 and len(r.json()["examples"]) == 30


def test_a_rotated_key_shows_key_refused_until_the_new_key_is_entered(page, explorer, server):
    connect(page, explorer, server.key())
    open_model(page, "breast_cancer")
    wait_panels(page)
    old = server.key()
    api_key = json.loads(server.key_file.read_text())["API"]["key"]
    r = requests.get(f"{server.management_url}/token", params={"type": "inference"},
                     headers={"Authorization": f"Bearer {api_key}"}, timeout=30)
    assert r.status_code == 200, r.text
    deadline = time.monotonic() + 10
    while server.key() == old and time.monotonic() < deadline:
        time.sleep(0.1)
    assert server.key() != old
    # the next call the page makes is refused (it may already have made one: the gallery's)
    page.evaluate("() => window.explorer.runAll()")
    expect(page.locator("#key-state")).to_have_attribute("data-state", "refused")
    expect(page.locator("#app")).to_be_hidden()
    expect(page.locator("#banner")).to_contain_text("Key refused")
    page.fill("#key-input", server.key())
    page.click("#key-form button")
    expect(page.locator("#key-state")).to_have_attribute("data-state", "ok")
    expect(page.locator("body")).to_have_attribute("data-model", "breast_cancer")
    wait_panels(page)


def test_faithfulness_metrics_are_shown_when_the_answer_has_them(page, explorer, server):
    """Ticking "faithfulness metrics" asks the service for infidelity and sensitivity
    (``outputs.metrics``): the panel shows the values the service computes (seeded, so the
    same body sent to TorchServe directly gets the same values), the other panel none."""
    connect(page, explorer, server.key())
    open_model(page, "breast_cancer")
    wait_panels(page)
    first, second = page.locator(".panel").nth(0), page.locator(".panel").nth(1)
    assert panel_algorithms(page)[0] == "IntegratedGradients"
    expect(first.locator(".metrics-box")).to_have_count(0)
    body = rerun(page, lambda: first.locator(".metrics-toggle").check(),
                 accept=lambda b: "metrics" in b.get("outputs", {}))
    assert body["outputs"]["metrics"] == ["infidelity", "sensitivity"]
    served = api_answer(server, "breast_cancer", body)["explanations"][0]["metrics"]
    assert set(served) == {"infidelity", "sensitivity"}
    assert served["sensitivity"] > 0
    for name, value in served.items():
        cell = first.locator(f".metrics-box dd[data-metric={name}]")
        assert float(cell.inner_text()) == pytest.approx(value, rel=1e-2, abs=1e-5)
    expect(second.locator(".metrics-box")).to_have_count(0)


def test_tinylm_probe_matrix_and_bars_match_the_api(page, explorer, server, tmp_path):
    """A text model: a capital probe's answer, its sequence attribution as bars and its
    token-by-token matrix as table cells are the API's answer to the same request, and the
    planted cause (the country) has the largest bar; a bad prompt shows its field."""
    connect(page, explorer, server.key())
    open_model(page, "tinylm")
    wait_panels(page)
    examples = json.loads((BUNDLED_STORE / "tinylm" / "examples.json").read_text())["examples"]
    probe = [e for e in examples if "country" in e["inputs"].get("template", {}).get("values", {})][-1]
    template = probe["inputs"]["template"]
    sent = rerun(page, lambda: page.click(f"#gallery .example[data-id={probe['id']}]"),
                 lambda b: b["inputs"].get("template", {}).get("template") == template["template"])
    assert sent["inputs"]["template"]["values"] == template["values"]
    unk = server.models["tinylm"]["input"]["text"]["baseline_token"]   # the page's default
    assert sent["inputs"]["template"]["baselines"] == {k: unk for k in template["values"]}
    expect(page.locator("#input-title")).to_contain_text(probe["id"])
    for i, algorithm in enumerate(panel_algorithms(page)):
        answer = api_answer(server, "tinylm", sent_body(page, "tinylm", algorithm))
        text = answer["text"]
        panel = page.locator(".panel").nth(i)
        assert panel.locator(".generated").inner_text() == text["generated"] == probe["true_label"]
        bars = panel.locator("rect.bar")
        expect(bars).to_have_count(len(text["inputFeatures"]))
        drawn = dict(bars.evaluate_all(
            "els => els.map(e => [Number(e.dataset.index), [e.dataset.feature, Number(e.dataset.value)]])"))
        for j, (name, value) in enumerate(zip(text["inputFeatures"], text["seqAttr"], strict=True)):
            assert drawn[j][0] == name, (algorithm, j)
            assert drawn[j][1] == pytest.approx(value, rel=1e-6, abs=1e-9), (algorithm, name)
        top = max(drawn.values(), key=lambda fv: fv[1])[0]
        assert top == template["values"]["country"], (algorithm, drawn)
        want = wire.tensor_from_proto(wire.response_from_json(json.dumps(answer)).text.token_attr,
                                      "tokenAttr")
        assert want.shape == (len(text["outputTokens"]), len(text["inputFeatures"]))
        cells = panel.locator(".token-matrix td")
        expect(cells).to_have_count(want.size)
        got = cells.evaluate_all("els => els.map(e => [Number(e.dataset.row), Number(e.dataset.col),"
                                 " Number(e.dataset.value), e.title.endsWith(': ' + e.dataset.value)])")
        assert sorted((r, c) for r, c, _, _ in got) == [(r, c) for r in range(want.shape[0])
                                                        for c in range(want.shape[1])]
        for row, col, value, titled in got:
            assert value == pytest.approx(float(want[row, col]), rel=1e-6, abs=1e-9)
            assert titled, (row, col)
        rows = panel.locator(".token-matrix tbody th").all_inner_texts()
        assert rows == text["outputTokens"]
        cols = panel.locator(".token-matrix thead th").all_inner_texts()[1:]
        assert cols == text["inputFeatures"]
        expect(panel.locator("img.heatmap")).to_be_visible()
    shot(page, tmp_path, "tinylm")
    # an empty free prompt is refused naming inputs.text, in every panel
    prompt_ex = next(e for e in examples if "text" in e["inputs"])
    rerun(page, lambda: page.click(f"#gallery .example[data-id={prompt_ex['id']}]"),
          lambda b: b["inputs"].get("text") == prompt_ex["inputs"]["text"])
    page.fill("#prompt", "")
    page.locator("#prompt").dispatch_event("change")
    err = page.locator(".prediction-card .error, .panel .error").first
    expect(err).to_be_visible(timeout=SLOW)
    assert err.get_attribute("data-field") == "inputs.text"
