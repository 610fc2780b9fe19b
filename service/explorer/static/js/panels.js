// One algorithm panel: its algorithm, parameters, target and baseline; Run; the result drawn
// (overlay or signed bars, reasons, approximation error, metrics, times) or the API's error.
import { api, decodeTensor } from "./api.js";
import { classBars, overlay, signedBars, tokenMatrix } from "./charts.js";
import { clear, fmt, h } from "./dom.js";
import { imageSrc, requestInputs } from "./inputs.js";

export function defaultPanels(spec) {
  const names = (spec.algorithms || []).map((a) => a.name);
  const first = spec.defaultAlgorithm && names.includes(spec.defaultAlgorithm)
    ? spec.defaultAlgorithm : names[0];
  const second = ["Saliency", "DeepLift", "InputXGradient"].find((n) => n !== first && names.includes(n))
    || names.find((n) => n !== first);
  return [first, second].filter(Boolean).map((a) => ({ a, p: {}, t: "predicted", b: "default" }));
}

function algoInfo(spec, name) {
  return (spec.algorithms || []).find((a) => a.name === name) || { name, params: [], baselines: "none" };
}

function parseParam(info, text) {
  if (info.type === "int") return Math.trunc(Number(text));
  if (info.type === "float") return Number(text);
  if (info.type === "bool") return text === true || String(text).toLowerCase() === "true";
  if (info.type === "tuple") return String(text).replace(/[()[\]\s]/g, "").split(",").filter(Boolean).map(Number);
  return String(text);
}

function baselineOptions(spec, mode) {
  const named = spec.baselines || [];
  if (mode === "reference_set") {
    return [["default", `model default (${spec.defaultBaseline || "reference set"})`],
      ["ref:", "reference set (default)"],
      ...named.filter((n) => /ref/i.test(n)).map((n) => [`ref:${n}`, `reference set "${n}"`])];
  }
  const out = [["default", `model default (${spec.defaultBaseline || "zeros"})`],
    ...named.map((n) => [`named:${n}`, n]), ["zeros", "zeros"]];
  if (spec.inputKind === "image") out.push(["blur", "blurred input"]);
  out.push(["uniform", "uniform noise (seed 0)"]);
  return out;
}

function baselineJson(key) {
  if (!key || key === "default") return undefined;
  if (key === "zeros") return { zeros: true };
  if (key === "blur") return { blur: { sigma: 0 } };
  if (key === "uniform") return { uniform: { low: 0, high: 0, seed: "0" } };
  if (key.startsWith("named:")) return { named: key.slice(6) };
  if (key.startsWith("ref:")) return { referenceSet: key.slice(4) };
  return undefined;
}

// The model's layers (GetModelSpec's `layers`, the default first) and the one a panel picked.
function layerInfo(spec, name) {
  const layers = spec.layers || [];
  return layers.find((l) => l.name === name) || layers[0];
}

function onLayer(info) {
  return ["layer", "neuron", "cam"].includes(info.family);
}

// The `layer` selector of a layer, neuron or CAM method: the picked layer, and for neuron
// methods the neuron ("3,4,4"; by default the first neuron of the layer's output).
function layerJson(spec, info, cfg) {
  if (!onLayer(info)) return undefined;
  const layer = layerInfo(spec, cfg.l);
  const out = { name: layer ? layer.name : "" };
  if (info.family === "neuron") {
    const given = String(cfg.n || "").split(",").map((v) => v.trim()).filter(Boolean).map(Number);
    out.neuron = given.length ? given : ((layer && layer.outputShape) || []).map(() => 0);
  }
  return out;
}

// A text model explains an answer (the model's own, or targetText): no class target, no
// tensor baseline (a template's slots carry their own).
function textRequest(spec, cfg, input) {
  const info = algoInfo(spec, cfg.a);
  const req = { inputs: requestInputs(input), algorithm: cfg.a,
    outputs: { attributions: true, heatmap: true } };
  if (input.targetText) req.targetText = input.targetText;
  const params = {};
  for (const p of info.params || []) {
    if (cfg.p && cfg.p[p.name] !== undefined) params[p.name] = parseParam(p, cfg.p[p.name]);
  }
  if (Object.keys(params).length) req.params = params;
  return req;
}

export function buildRequest(spec, cfg, input) {
  if (spec.inputKind === "text") return textRequest(spec, cfg, input);
  const info = algoInfo(spec, cfg.a);
  const layer = layerInfo(spec, cfg.l);
  // a layer method's heatmap is its (C, H, W) map: asked only for such layers
  const heatmap = spec.inputKind === "image"
    && (info.family !== "layer" || (layer && (layer.outputShape || []).length === 3));
  const req = { inputs: requestInputs(input), algorithm: cfg.a,
    outputs: { attributions: true, topFeatures: 5, heatmap } };
  const sel = layerJson(spec, info, cfg);
  if (sel) req.layer = sel;
  const params = {};
  for (const p of info.params || []) {
    if (cfg.p && cfg.p[p.name] !== undefined) params[p.name] = parseParam(p, cfg.p[p.name]);
  }
  if (Object.keys(params).length) req.params = params;
  req.target = cfg.t === "predicted" || cfg.t === undefined ? { predicted: true } : { index: Number(cfg.t) };
  const mode = info.baselines || "none";
  const b = mode === "none" ? undefined : baselineJson(cfg.b);
  if (b) req.baseline = b;
  if (cfg.m) req.outputs.metrics = ["infidelity", "sensitivity"];
  return req;
}

export class Panel {
  constructor(app, cfg) {
    this.app = app;
    this.cfg = { p: {}, t: "predicted", b: "default", ...cfg };
    this.el = h("article", { class: "card panel" });
    this.controller = null;
    this.render();
  }

  get spec() { return this.app.spec; }

  changed() {
    this.app.saveState();
    this.renderForm();
  }

  render() {
    this.form = h("div", { class: "form" });
    this.result = h("div", { class: "result", "aria-live": "polite" });
    this.status = h("div", { class: "status" });
    clear(this.el, this.form, this.status, this.result);
    this.renderForm();
  }

  renderForm() {
    const spec = this.spec;
    const info = algoInfo(spec, this.cfg.a);
    const algo = h("select", { class: "algorithm", "aria-label": "algorithm",
      onchange: () => { this.cfg = { ...this.cfg, a: algo.value, p: {} }; this.changed(); this.run(); } },
    (spec.algorithms || []).map((a) => h("option", { value: a.name }, a.name)));
    algo.value = this.cfg.a;
    const remove = h("button", { class: "icon", title: "remove this algorithm", type: "button",
      onclick: () => this.app.removePanel(this) }, "×");
    const params = h("div", { class: "params" });
    for (const p of info.params || []) params.append(this.paramField(p));
    const target = h("select", { class: "target", "aria-label": "target",
      onchange: () => { this.cfg.t = target.value; this.changed(); this.run(); } },
    h("option", { value: "predicted" }, "predicted class"),
    (spec.classNames || []).map((c, i) => h("option", { value: String(i) }, `${i}: ${c}`)));
    target.value = String(this.cfg.t ?? "predicted");
    const text = spec.inputKind === "text";
    const rows = [
      h("div", { class: "head" }, algo, remove),
      params,
      text ? null : h("label", { class: "row" }, h("span", {}, "target"), target),
    ];
    if (onLayer(info) && (spec.layers || []).length) {
      const layer = h("select", { class: "layer", "aria-label": "layer",
        onchange: () => { this.cfg.l = layer.value; this.cfg.n = undefined; this.changed(); this.run(); } },
      spec.layers.map((l) => h("option", { value: l.name },
        `${l.name} (${(l.outputShape || []).join("×")})`)));
      layer.value = layerInfo(spec, this.cfg.l).name;
      rows.push(h("label", { class: "row" }, h("span", {}, "layer"), layer));
      if (info.family === "neuron") {
        const shape = (layerInfo(spec, this.cfg.l).outputShape || []).join("×");
        const neuron = h("input", { type: "text", class: "neuron", "aria-label": "neuron",
          value: this.cfg.n || "", placeholder: "0,…", title: `index in the layer's output (${shape})`,
          onchange: () => { this.cfg.n = neuron.value || undefined; this.app.saveState(); this.run(); } });
        rows.push(h("label", { class: "row" }, h("span", {}, "neuron"), neuron));
      }
    }
    if (!text && (info.baselines || "none") !== "none") {
      const base = h("select", { class: "baseline", "aria-label": "baseline",
        onchange: () => { this.cfg.b = base.value; this.changed(); this.run(); } },
      baselineOptions(spec, info.baselines).map(([v, label]) => h("option", { value: v }, label)));
      base.value = this.cfg.b || "default";
      if (base.value === "") base.value = "default";
      rows.push(h("label", { class: "row" }, h("span", {}, "baseline"), base));
    }
    const metrics = h("input", { type: "checkbox", class: "metrics-toggle", checked: !!this.cfg.m,
      onchange: () => { this.cfg.m = metrics.checked || undefined; this.changed(); this.run(); } });
    if (!text) rows.push(h("label", { class: "row check", title: "ask for infidelity and sensitivity (outputs.metrics): extra passes after the explanation" },
      metrics, h("span", {}, "faithfulness metrics (infidelity, sensitivity)")));
    rows.push(h("button", { class: "run", type: "button", onclick: () => this.run() }, "Run"));
    clear(this.form, rows);
  }

  paramField(p) {
    const value = this.cfg.p[p.name] ?? p.defaultValue;
    const set = (v) => {
      if (String(v) === String(p.defaultValue)) delete this.cfg.p[p.name];
      else this.cfg.p[p.name] = v;
      this.app.saveState();
    };
    let input;
    if (p.type === "bool") {
      input = h("input", { type: "checkbox", checked: String(value) === "True" || String(value) === "true",
        onchange: () => { set(input.checked ? "True" : "False"); this.run(); } });
    } else if ((p.choices || []).length) {
      input = h("select", { onchange: () => { set(input.value); this.renderForm(); this.run(); } },
        p.choices.map((c) => h("option", { value: c }, c)));
      input.value = String(value);
    } else {
      const numeric = p.type === "int" || p.type === "float";
      const hasRange = Number(p.maximum) > 0 || Number(p.minimum) !== 0;
      input = h("input", { type: numeric ? "number" : "text", value: String(value),
        step: p.type === "int" ? 1 : "any",
        min: numeric && hasRange ? p.minimum : undefined,
        max: numeric && Number(p.maximum) > 0 ? p.maximum : undefined,
        onchange: () => { set(input.value); this.run(); } });
    }
    input.setAttribute("aria-label", p.name);
    input.dataset.param = p.name;
    const limits = [];
    if (Number(p.minimum) !== 0 || Number(p.maximum) > 0) limits.push(`≥ ${p.minimum}`);
    if (Number(p.maximum) > 0) limits.push(`≤ ${p.maximum}`);
    return h("label", { class: p.type === "bool" ? "row check" : "row", title: `${p.name} (${p.type}), default ${p.defaultValue}` },
      p.type === "bool" ? [input, h("span", {}, p.name)] : [h("span", {}, p.name), input],
      limits.length ? h("small", { class: "limits" }, limits.join(", ")) : null);
  }

  cancel() {
    if (this.controller) this.controller.abort();
  }

  async run() {
    const input = this.app.input;
    if (!input) return;
    this.cancel();
    const controller = new AbortController();
    this.controller = controller;
    const req = buildRequest(this.spec, this.cfg, input);
    const started = performance.now();
    this.el.classList.add("pending");
    this.el.dataset.state = "pending";
    const tick = () => {
      const s = ((performance.now() - started) / 1000).toFixed(1);
      clear(this.status, h("span", { class: "spinner" }), ` running ${this.cfg.a}… ${s} s `,
        h("button", { type: "button", class: "link", onclick: () => controller.abort() }, "cancel"));
    };
    tick();
    const timer = setInterval(tick, 100);
    try {
      const answer = await api.explain(this.spec.name, req, controller.signal);
      const ms = performance.now() - started;
      this.answer = answer;
      await this.draw(answer, input, ms);
      this.el.dataset.state = "done";
      clear(this.status);
    } catch (err) {
      if (err.name === "AbortError") {
        if (this.controller === controller) {
          clear(this.status, "cancelled");
          this.el.dataset.state = "cancelled";
        }
        return;
      }
      this.el.dataset.state = "error";
      clear(this.status);
      clear(this.result, errorBox(err));
    } finally {
      clearInterval(timer);
      if (this.controller === controller) {
        this.controller = null;
        this.el.classList.remove("pending");
      }
    }
  }

  async draw(answer, input, roundTripMs) {
    const spec = this.spec;
    const parts = [];
    if (answer.text) parts.push(drawText(answer.text, answer.timings || {}, roundTripMs));
    for (const e of answer.explanations || []) {
      parts.push(h("div", { class: "explained" }, "explaining ",
        h("b", {}, e.label || `class ${e.target}`), ` (class ${e.target ?? 0})`));
      const tensor = decodeTensor(e.attributions);
      if ((e.attributedTo || "input").startsWith("layer")) {
        // a layer-shaped answer: no overlay on the input; the layer's units as bars
        const where = e.attributedTo === "layer_input" ? "input" : "output";
        parts.push(h("p", { class: "layer-note" },
          `attributions to the units of layer ${e.layer}'s ${where}${tensor ? ` (shape ${tensor.shape.join("×")})` : ""}; top units:`));
        parts.push(h("div", { class: "chart" }, signedBars((e.topFeatures || []).map((f) => ({
          name: f.name, attribution: Number(f.attribution), value: Number(f.value) })))));
        if (e.heatmapPng) {
          parts.push(h("figure", {}, h("img", { class: "heatmap", alt: "layer heatmap",
            src: `data:image/png;base64,${e.heatmapPng}` }), h("figcaption", {}, `layer ${e.layer} heatmap`)));
        }
      } else if (spec.inputKind === "image") {
        const pics = h("div", { class: "pictures" });
        if (tensor) {
          const canvas = await overlay(imageSrc(input), tensor);
          pics.append(h("figure", {}, canvas, h("figcaption", {}, "attribution over the input")));
        }
        if (e.heatmapPng) {
          pics.append(h("figure", {}, h("img", { class: "heatmap", alt: "heatmap",
            src: `data:image/png;base64,${e.heatmapPng}` }), h("figcaption", {}, "service heatmap")));
        }
        parts.push(pics);
      } else if (tensor) {
        const names = spec.featureNames || [];
        const values = input.features || {};
        const rows = names.map((name, i) => ({ name, attribution: tensor.values[i],
          value: values[name] }));
        parts.push(h("div", { class: "chart" }, signedBars(rows)));
      }
      if ((e.reasons || []).length) {
        parts.push(h("ul", { class: "reasons" }, e.reasons.map((r) => h("li", {}, r))));
      } else if (e.reasonsNote) {
        parts.push(h("p", { class: "reasons-note" }, e.reasonsNote));  // e.g. an unsigned method
      }
      parts.push(numbers(e, answer.timings || {}, roundTripMs));
      if (e.metrics && Object.keys(e.metrics).length) parts.push(metricsTable(e.metrics));
    }
    if (answer.metrics && Object.keys(answer.metrics).length) parts.push(metricsTable(answer.metrics));
    clear(this.result, parts);
  }
}

// A text answer: the answer explained, its attribution to each input feature (seqAttr) as
// signed bars, the token-by-token matrix (tokenAttr, rows: answer tokens) and the heatmap PNG.
function drawText(t, timings, roundTripMs) {
  const features = t.inputFeatures || [];
  const tokens = t.outputTokens || [];
  const seq = t.seqAttr || [];
  const matrix = decodeTensor(t.tokenAttr);
  const out = [h("div", { class: "explained" }, "explaining the answer ",
    h("b", { class: "generated" }, t.generated ?? tokens.join(" ")))];
  out.push(h("div", { class: "chart" }, signedBars(features.map((name, i) => ({
    name, index: i, attribution: Number(seq[i]), value: undefined })))));
  if (matrix && matrix.values.length === tokens.length * features.length) {
    out.push(h("div", { class: "matrix-box" }, tokenMatrix(tokens, features, matrix)));
  } else {
    out.push(h("p", { class: "reasons-note" }, "no token-by-token matrix: this method attributes the whole answer only"));
  }
  if (t.heatmapPng) {
    out.push(h("figure", {}, h("img", { class: "heatmap token-heatmap", alt: "token heatmap",
      src: `data:image/png;base64,${t.heatmapPng}` }), h("figcaption", {}, "service heatmap")));
  }
  const dl = h("dl", { class: "numbers" });
  dl.append(h("dt", {}, "time"), h("dd", { class: "time" },
    `${fmt(Number(timings.explainMs || 0), 1)} ms explain · ${roundTripMs.toFixed(0)} ms total`));
  out.push(dl);
  return out;
}

function numbers(e, t, roundTripMs) {
  const dl = h("dl", { class: "numbers" });
  const add = (k, v, cls) => dl.append(h("dt", {}, k), h("dd", { class: cls || "" }, v));
  if (e.approximationError !== undefined && e.approximationError !== null) {
    add("approximation error", fmt(Number(e.approximationError), 5), "approx");
  }
  if (e.approximationError !== undefined && e.approximationError !== null) {
    add("output − baseline", `${fmt(Number(e.instanceOutput))} − ${fmt(Number(e.baselineOutput))}`);
  } else {
    add("output", fmt(Number(e.instanceOutput)));
  }
  add("time", `${fmt(Number(t.explainMs || 0), 1)} ms explain · ${roundTripMs.toFixed(0)} ms total`, "time");
  dl.lastChild.title = `server ${fmt(Number(t.totalMs || 0), 1)} ms (predict ${fmt(Number(t.predictMs || 0), 1)}, explain ${fmt(Number(t.explainMs || 0), 1)}); round trip from this page ${roundTripMs.toFixed(0)} ms`;
  if (Number(t.fusedGroupSize) > 1) add("fused with", `${t.fusedGroupSize - 1} other request(s)`);
  return dl;
}

function metricsTable(m) {
  const dl = h("dl", { class: "numbers metrics" });
  for (const [k, v] of Object.entries(m)) {
    dl.append(h("dt", {}, k), h("dd", { dataset: { metric: k } }, typeof v === "number" ? fmt(v, 5) : JSON.stringify(v)));
  }
  return h("div", { class: "metrics-box" }, h("h4", {}, "faithfulness"), dl);
}

export function errorBox(err) {
  return h("div", { class: "error", role: "alert", dataset: { code: err.code || "", field: err.field || "" } },
    h("b", {}, err.code || "ERROR"),
    err.field ? [" in ", h("code", { class: "field" }, err.field)] : null,
    h("div", { class: "message" }, err.message),
    (err.allowed || []).length ? h("div", { class: "allowed" }, "allowed: ", err.allowed.join(", ")) : null);
}

export { classBars };
