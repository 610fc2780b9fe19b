// The explorer page: key, models and their specs, inputs (examples, upload, fields), the
// prediction, and one to four algorithm panels side by side.
import { api, getKey, onKeyRefused, setKey } from "./api.js";
import { classBars } from "./charts.js";
import { clear, h } from "./dom.js";
import { editor, inputFromExample, requestInputs } from "./inputs.js";
import { defaultPanels, errorBox, Panel } from "./panels.js";
import { readState, writeState } from "./state.js";

const MAX_PANELS = 4;
const $ = (id) => document.getElementById(id);

class App {
  constructor() {
    this.state = readState();
    this.models = [];
    this.spec = null;
    this.examples = [];
    this.predictions = new Map();   // example id -> prediction
    this.input = null;
    this.panels = [];
    this.generation = 0;            // bumps on every model switch (late answers are dropped)
  }

  async start() {
    $("key-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      setKey($("key-input").value.trim());
      $("key-input").value = "";
      this.connect();
    });
    $("add-panel").addEventListener("click", () => this.addPanel());
    $("run-all").addEventListener("click", () => this.runAll());
    onKeyRefused((err) => this.refused(err));
    await this.connect();
  }

  keyState(state, text) {
    const pill = $("key-state");
    pill.dataset.state = state;
    pill.textContent = text;
    document.body.dataset.key = state;
  }

  banner(content, kind = "warn") {
    const b = $("banner");
    if (!content) { b.hidden = true; return; }
    b.dataset.kind = kind;
    clear(b, content);
    b.hidden = false;
  }

  refused(err) {
    this.keyState("refused", "key refused");
    $("app").hidden = true;
    this.banner(h("span", { title: err.message }, h("b", {}, "Key refused. "),
      "The service does not accept this inference key: it is wrong, or it has expired (the service ",
      "rotates its keys). Enter the current key above (", h("code", {}, "run/<instance>/key_file.json"),
      ", ", h("code", {}, "inference.key"), ")."), "error");
    $("key-input").focus();
  }

  async connect() {
    this.keyState("checking", "checking…");
    try {
      const s = await api.session();
      this.keyState(s.key_sent ? "ok" : "off", s.key_sent ? "key accepted" : "auth off");
      this.banner(null);
    } catch (err) {
      if (err.keyRefused) {
        if (!getKey()) {
          this.keyState("needed", "key needed");
          $("app").hidden = true;
          this.banner(h("span", {}, "This service needs its ", h("b", {}, "inference key"),
            ". Paste it above; it stays in this tab and goes with every call."), "info");
          $("key-input").focus();
        }
        return;
      }
      this.keyState("down", "service unreachable");
      this.banner(errorBox(err), "error");
      return;
    }
    $("app").hidden = false;
    await this.loadModels();
  }

  async loadModels() {
    let answer;
    try { answer = await api.models(); } catch (err) { if (!err.keyRefused) this.banner(errorBox(err), "error"); return; }
    this.models = answer.models || [];
    const nav = clear($("models"));
    for (const m of this.models) {
      nav.append(h("button", { type: "button", class: "model", dataset: { model: m.name },
        // the model shown (or loading) stays as it is: a second load would replace its
        // panels and lose the edits made meanwhile
        onclick: () => { if (this.current !== m.name) this.selectModel(m.name, { fresh: true }); } },
      h("span", { class: "name" }, m.name),
      h("span", { class: "kind" }, m.inputKind, m.purpose === "load_test_only" ? " · load test" : "")));
    }
    const wanted = this.models.find((m) => m.name === this.state.model) ? this.state.model
      : this.models[0]?.name;
    if (wanted) await this.selectModel(wanted, { fresh: wanted !== this.state.model });
  }

  saveState() {
    if (!this.spec) return;
    const s = { model: this.spec.name, example: this.input?.exampleId || undefined,
      panels: this.panels.map((p) => compact(p.cfg)), pred: this.state.pred, true: this.state.true,
      wrong: this.state.wrong };
    if (this.input && !this.input.exampleId && this.input.kind === "tabular") {
      s.input = { features: this.input.features };
    }
    writeState(s);
  }

  async selectModel(name, { fresh = false } = {}) {
    const gen = ++this.generation;
    this.current = name;
    this.panels.forEach((p) => p.cancel());
    if (fresh) this.state = { model: name };
    document.querySelectorAll("#models .model").forEach((b) =>
      b.classList.toggle("active", b.dataset.model === name));
    let spec, examples;
    try {
      [spec, examples] = await Promise.all([api.spec(name), api.examples(name)]);
    } catch (err) {
      if (!err.keyRefused) this.banner(errorBox(err), "error");
      if (gen === this.generation) this.current = null;  // a click may try again
      return;
    }
    if (gen !== this.generation) return;
    this.spec = spec;
    this.examples = examples.examples || [];
    this.truth = examples.truth || "";
    this.predictions = new Map();
    document.body.dataset.model = name;
    this.renderSpec();
    const wanted = this.examples.find((e) => e.id === this.state.example) || this.examples[0];
    if (this.state.input?.features && spec.inputKind !== "image") {
      this.input = { kind: "tabular", features: this.state.input.features, exampleId: null, trueIndex: null };
    } else {
      this.input = wanted ? inputFromExample(wanted, spec) : null;
    }
    const cfgs = (this.state.panels || []).filter((c) => (spec.algorithms || []).some((a) => a.name === c.a));
    this.panels = (cfgs.length ? cfgs : defaultPanels(spec)).slice(0, MAX_PANELS).map((c) => new Panel(this, c));
    clear($("panels"), this.panels.map((p) => p.el));
    this.updatePanelButtons();
    this.renderFilters();
    this.renderGallery();
    this.renderInput();
    this.saveState();
    await this.inputChanged({ run: spec.purpose !== "load_test_only" || !!this.state.example });
    this.predictExamples(gen);
  }

  renderSpec() {
    const s = this.spec;
    const shape = (s.inputShape || []).map(Number);
    const classes = s.classNames || [];
    const feats = s.featureNames || [];
    const algos = s.algorithms || [];
    clear($("spec"),
      h("h2", {}, s.name, " ", h("small", {}, `v${s.version}`)),
      s.purpose === "load_test_only" ? h("div", { class: "badge warn" }, "load test only: untrained weights, predictions mean nothing") : null,
      h("p", { class: "desc" }, s.description),
      h("dl", { class: "facts" },
        h("dt", {}, "input"), h("dd", { id: "spec-input" }, `${s.inputKind} ${shape.join("×")}`),
        s.text ? [h("dt", {}, "tokens"), h("dd", {}, `context ${s.text.contextLength}, stop "${s.text.stopToken}",`
          + ` removed word "${s.text.baselineToken}"`)] : null,
        s.text ? null : h("dt", {}, "classes"), s.text ? null : h("dd", {}, classes.length > 12
          ? `${classes.length}: ${classes.slice(0, 3).join(", ")} … ${classes.at(-1)}` : classes.join(", ")),
        feats.length ? [h("dt", {}, "features"), h("dd", {}, h("details", {},
          h("summary", {}, `${feats.length} named features`),
          h("div", { class: "chips" }, feats.map((f) => h("span", { class: "chip" }, f)))))] : null,
        s.text ? null : [h("dt", {}, "baselines"), h("dd", {}, (s.baselines || []).map((b) =>
          b === s.defaultBaseline ? `${b} (default)` : b).join(", "))],
        h("dt", {}, "batching"), h("dd", {}, `${s.batchSize} per batch, ${s.maxBatchDelayMs} ms delay`)),
      h("details", { class: "algos-spec" }, h("summary", {}, `${algos.length} algorithms allowed`),
        h("table", { class: "spec-table" }, h("tbody", {}, algos.map((a) => h("tr", {},
          h("th", {}, a.name, a.name === s.defaultAlgorithm ? h("span", { class: "default" }, " default") : null,
            h("div", { class: "mode" }, `baseline: ${a.baselines}`)),
          h("td", {}, (a.params || []).length ? (a.params || []).map((p) => h("div", { class: "param" },
            h("code", {}, p.name), ` ${p.type} = ${p.defaultValue}`,
            (p.choices || []).length ? h("small", {}, ` (${p.choices.join(" | ")})`) : null,
            Number(p.maximum) > 0 ? h("small", {}, ` [${p.minimum}, ${p.maximum}]`)
              : Number(p.minimum) !== 0 ? h("small", {}, ` ≥ ${p.minimum}`) : null))
            : h("small", {}, "no parameters"))))))));
  }

  // -- examples and filters (as Insights: by predicted and by true class) ---------------------

  renderFilters() {
    if (this.spec.inputKind === "text") return this.renderTextFilters();
    const classes = this.spec.classNames || [];
    const select = (key, label) => {
      const s = h("select", { id: `filter-${key}`, "aria-label": label,
        onchange: () => { this.state[key] = s.value === "any" ? undefined : s.value; this.saveState(); this.renderGallery(); } },
      h("option", { value: "any" }, `${label}: any`),
      classes.length <= 60 ? classes.map((c, i) => h("option", { value: String(i) }, `${label}: ${c}`)) : null);
      s.value = this.state[key] ?? "any";
      return s;
    };
    const wrong = h("input", { type: "checkbox", id: "filter-wrong", checked: this.state.wrong === "1",
      onchange: () => { this.state.wrong = wrong.checked ? "1" : undefined; this.saveState(); this.renderGallery(); } });
    clear($("filters"), select("pred", "predicted"), select("true", "true"),
      h("label", { class: "check" }, wrong, " misclassified only"));
    $("truth").textContent = this.truth ? `true class: ${this.truth}` : "";
  }

  // A text model has no classes: its examples are template probes and plain prompts, each with
  // the planted answer (true_label); the model's answer is its greedy generation.
  renderTextFilters() {
    const s = h("select", { id: "filter-kind", "aria-label": "kind",
      onchange: () => { this.state.kind = s.value === "any" ? undefined : s.value; this.saveState(); this.renderGallery(); } },
    h("option", { value: "any" }, "input: any"), h("option", { value: "template" }, "input: template probes"),
    h("option", { value: "text" }, "input: plain prompts"));
    s.value = this.state.kind ?? "any";
    const wrong = h("input", { type: "checkbox", id: "filter-wrong", checked: this.state.wrong === "1",
      onchange: () => { this.state.wrong = wrong.checked ? "1" : undefined; this.saveState(); this.renderGallery(); } });
    clear($("filters"), s, h("label", { class: "check" }, wrong, " wrong answers only"));
    $("truth").textContent = this.truth ? `expected answer: ${this.truth}` : "";
  }

  renderGallery() {
    const g = clear($("gallery"));
    const classes = this.spec.classNames || [];
    const text = this.spec.inputKind === "text";
    let shown = 0;
    for (const ex of this.examples) {
      const p = this.predictions.get(ex.id);
      const pred = p ? Number(p.index ?? 0) : null;
      if (!text && this.state.pred !== undefined && pred !== Number(this.state.pred)) continue;
      if (!text && this.state.true !== undefined && ex.true_index !== Number(this.state.true)) continue;
      if (text && this.state.kind !== undefined && (ex.inputs.template ? "template" : "text") !== this.state.kind) continue;
      // a text answer is wrong when the generation does not start with the planted answer
      const wrong = text
        ? Boolean(p && p.label !== undefined && ex.true_label && !String(p.label).trim().startsWith(String(ex.true_label).trim()))
        : p && ex.true_index !== null && ex.true_index !== undefined && pred !== ex.true_index;
      if (this.state.wrong === "1" && !wrong) continue;
      shown++;
      const thumb = ex.inputs.image !== undefined
        ? h("img", { src: `data:image/png;base64,${ex.inputs.image}`, alt: ex.id })
        : h("span", { class: "tab-thumb" }, ex.inputs.template ? "probe" : ex.inputs.text !== undefined
          ? "prompt" : ex.note ? "probe" : "#" + ex.id.split("-").at(-1));
      g.append(h("button", { type: "button", class: `example${wrong ? " wrong" : ""}${this.input?.exampleId === ex.id ? " selected" : ""}`,
        dataset: { id: ex.id, pred: pred ?? "", true: ex.true_index ?? "" }, title: ex.note || ex.id,
        onclick: () => this.selectExample(ex) },
      thumb,
      h("span", { class: "labels" },
        h("span", { class: "t" }, ex.true_label ?? "–"),
        h("span", { class: "p" }, p ? `→ ${text ? p.label ?? "" : classes[pred] ?? p.label ?? pred}` : "…"))));
    }
    if (!shown) g.append(h("div", { class: "empty" }, this.examples.length
      ? "No example matches the filter." : "This model ships no examples."));
  }

  async predictExamples(gen) {
    const queue = [...this.examples];
    const worker = async () => {
      while (queue.length && gen === this.generation) {
        const ex = queue.shift();
        try {
          const r = await api.predict(this.spec.name, { inputs: ex.inputs });
          if (gen !== this.generation) return;
          this.predictions.set(ex.id, r.prediction || {});
          this.galleryLater();
        } catch (err) {
          if (err.keyRefused) return;
        }
      }
    };
    await Promise.all([worker(), worker(), worker()]);
    if (gen === this.generation) this.renderGallery();
  }

  galleryLater() {
    if (this.galleryFrame) return;
    this.galleryFrame = requestAnimationFrame(() => { this.galleryFrame = null; this.renderGallery(); });
  }

  async selectExample(ex) {
    this.input = inputFromExample(ex, this.spec);
    this.state.example = ex.id;
    this.state.input = undefined;
    this.renderInput();
    this.renderGallery();
    this.saveState();
    await this.inputChanged({ run: true });
  }

  // -- input and prediction ------------------------------------------------------------------

  renderInput() {
    clear($("input-editor"), editor(this.spec, this.input, (input) => {
      this.input = input;
      this.state.example = input.exampleId || undefined;
      if (input.kind === "image") this.renderInput();   // fields edit themselves in place
      else this.renderTitle();
      this.renderGallery();
      this.saveState();
      clearTimeout(this.debounce);
      this.debounce = setTimeout(() => this.inputChanged({ run: this.spec.purpose !== "load_test_only" }), 350);
    }));
    this.renderTitle();
  }

  renderTitle() {
    const ex = this.examples.find((e) => e.id === this.input?.exampleId);
    $("input-title").textContent = ex ? `Input: ${ex.id}` + (ex.true_label ? ` (true: ${ex.true_label})` : "")
      : this.input ? "Input: your own" : "Input";
  }

  async inputChanged({ run }) {
    const gen = this.generation;
    const box = clear($("prediction"), h("div", { class: "status" }, h("span", { class: "spinner" }), " predicting…"));
    if (!this.input) { clear(box, "No input yet."); return; }
    try {
      const r = await api.predict(this.spec.name, { inputs: requestInputs(this.input) });
      if (gen !== this.generation) return;
      const p = r.prediction || {};
      clear(box,
        h("div", { class: "top-label" }, h("span", { id: "predicted-label" }, p.label ?? ""),
          h("span", { class: "prob" }, `${(100 * (p.probability || 0)).toFixed(1)}%`)),
        classBars((p.top || []).slice(0, 5), this.input.trueIndex),
        h("div", { class: "hint" }, `predict ${Number(r.timings?.totalMs || 0).toFixed(1)} ms on the server`));
    } catch (err) {
      if (!err.keyRefused) clear(box, errorBox(err));
      return;
    }
    if (run) this.runAll();
  }

  // -- panels --------------------------------------------------------------------------------

  runAll() { this.panels.forEach((p) => p.run()); }

  addPanel() {
    if (this.panels.length >= MAX_PANELS || !this.spec) return;
    const used = new Set(this.panels.map((p) => p.cfg.a));
    const next = (this.spec.algorithms || []).find((a) => !used.has(a.name)) || this.spec.algorithms[0];
    const panel = new Panel(this, { a: next.name });
    this.panels.push(panel);
    $("panels").append(panel.el);
    this.updatePanelButtons();
    this.saveState();
    panel.run();
  }

  removePanel(panel) {
    if (this.panels.length <= 1) return;
    panel.cancel();
    this.panels = this.panels.filter((p) => p !== panel);
    panel.el.remove();
    this.updatePanelButtons();
    this.saveState();
  }

  updatePanelButtons() {
    $("add-panel").disabled = this.panels.length >= MAX_PANELS;
    $("panels").dataset.count = String(this.panels.length);
  }
}

function compact(cfg) {
  const out = { a: cfg.a };
  if (cfg.p && Object.keys(cfg.p).length) out.p = cfg.p;
  if (cfg.t && cfg.t !== "predicted") out.t = cfg.t;
  if (cfg.b && cfg.b !== "default") out.b = cfg.b;
  if (cfg.m) out.m = 1;
  if (cfg.l) out.l = cfg.l;
  if (cfg.n) out.n = cfg.n;
  return out;
}

const app = new App();
window.explorer = app;   // for the browser tests and curious users
app.start();
