// Input editors: an image (bundled example or upload), named tabular fields, and a recommender
// user built by ticking watched titles. Each calls onChange(input) with the new input:
// {kind: "image", image: base64, mime}, {kind: "tabular", features: {name: value}}, or for a
// text model {kind: "text", text, targetText} / {kind: "template", template, values,
// baselines, targetText}.
import { h } from "./dom.js";

export function requestInputs(input) {
  if (input.kind === "image") return { image: input.image };
  if (input.kind === "text") return { text: input.text };
  if (input.kind === "template") {
    const t = { template: input.template, values: { ...input.values } };
    if (Object.keys(input.baselines || {}).length) t.baselines = { ...input.baselines };
    return { template: t };
  }
  return { tabular: { features: input.features } };
}

// A template probe without baselines gets the model's baseline token for each slot (tinylm
// was trained with unknown words, so a slot is measured against "that word unknown"; the
// service's default, "" = left out, gives sentences the model never saw). Editable.
export function inputFromExample(ex, spec) {
  const base = { exampleId: ex.id, trueIndex: ex.true_index ?? null };
  if (ex.inputs.image !== undefined) return { ...base, kind: "image", image: ex.inputs.image,
    mime: "image/png" };
  if (ex.inputs.text !== undefined) return { ...base, kind: "text", text: ex.inputs.text, targetText: "" };
  if (ex.inputs.template !== undefined) {
    const t = ex.inputs.template;
    const token = spec?.text?.baselineToken;
    const baselines = t.baselines || (token
      ? Object.fromEntries(Object.keys(t.values || {}).map((k) => [k, token])) : {});
    return { ...base, kind: "template", template: t.template, values: { ...(t.values || {}) },
      baselines: { ...baselines }, targetText: "" };
  }
  return { ...base, kind: "tabular", features: { ...(ex.inputs.tabular?.features || {}) } };
}

export function imageSrc(input) {
  return input?.kind === "image" ? `data:${input.mime || "image/png"};base64,${input.image}` : null;
}

export function isRecommender(spec) {
  const names = spec.featureNames || [];
  return names.some((n) => n.startsWith("watched:")) && names.some((n) => n.startsWith("genre:"));
}

export function editor(spec, input, onChange) {
  if (spec.inputKind === "image") return imageEditor(spec, input, onChange);
  if (spec.inputKind === "text") return textEditor(spec, input, onChange);
  if (isRecommender(spec)) return recommenderEditor(spec, input, onChange);
  return tabularEditor(spec, input, onChange);
}

function imageEditor(spec, input, onChange) {
  const file = h("input", { type: "file", accept: "image/png,image/jpeg", id: "upload",
    onchange: () => {
      const f = file.files[0];
      if (!f) return;
      const reader = new FileReader();
      reader.onload = () => {
        const [head, b64] = String(reader.result).split(",", 2);
        onChange({ kind: "image", image: b64, mime: head.slice(5).split(";")[0],
          exampleId: null, trueIndex: null });
      };
      reader.readAsDataURL(f);
    } });
  const shape = (spec.inputShape || []).map(Number);
  return h("div", { class: "image-editor" },
    input ? h("img", { class: "input-image", src: imageSrc(input), alt: "input image" }) : null,
    h("div", { class: "hint" },
      `The model takes ${shape.join("×")}; other sizes are resized by the service.`),
    h("label", { class: "upload" }, "Upload a PNG or JPEG ", file));
}

// A text model's prompt: the words of a free prompt, or a template's slot values (each slot a
// feature); and an optional answer to explain instead of the model's own (targetText).
function textEditor(spec, input, onChange) {
  let cur = input || { kind: "text", text: "", targetText: "" };
  const emit = (patch) => {
    cur = { ...cur, ...patch, exampleId: null, trueIndex: null };
    onChange(cur);
  };
  const rows = [];
  if (cur.kind === "template") {
    rows.push(h("div", { class: "template" }, h("code", {}, cur.template)));
    const grid = h("div", { class: "fields" });
    for (const [slot, value] of Object.entries(cur.values || {})) {
      const field = h("input", { type: "text", name: `slot:${slot}`, value, "aria-label": slot,
        onchange: () => emit({ values: { ...cur.values, [slot]: field.value.trim() } }) });
      const base = h("input", { type: "text", name: `baseline:${slot}`, value: cur.baselines?.[slot] ?? "",
        placeholder: "left out", "aria-label": `baseline of ${slot}`, title: "what the slot becomes when removed",
        onchange: () => emit({ baselines: { ...cur.baselines, [slot]: base.value.trim() } }) });
      grid.append(h("label", { class: "field" }, h("span", {}, `{${slot}}`), field),
        h("label", { class: "field" }, h("span", {}, `{${slot}} removed`), base));
    }
    rows.push(grid);
  } else {
    const prompt = h("textarea", { id: "prompt", rows: 3, "aria-label": "prompt",
      onchange: () => emit({ text: prompt.value }) });
    prompt.value = cur.text || "";
    rows.push(h("label", { class: "prompt" }, h("span", {}, "prompt (its words are the features)"), prompt));
  }
  const target = h("input", { type: "text", id: "target-text", value: cur.targetText || "",
    placeholder: "the model's own answer", "aria-label": "target text",
    onchange: () => emit({ targetText: target.value.trim() }) });
  rows.push(h("label", { class: "field target-text" }, h("span", {}, "answer to explain"), target));
  return h("div", { class: "text-editor" },
    h("div", { class: "hint" }, cur.kind === "template"
      ? "A template probe: its slots are the features; edit their values."
      : "A free prompt; pick a probe above for template slots."), rows);
}

function tabularEditor(spec, input, onChange) {
  const features = { ...(input?.features || {}) };
  const grid = h("div", { class: "fields" });
  for (const name of spec.featureNames || []) {
    const field = h("input", { type: "number", step: "any", name, value: features[name] ?? "",
      placeholder: "default", "aria-label": name,
      onchange: () => {
        const v = field.value.trim();
        if (v === "" || !Number.isFinite(Number(v))) delete features[name];
        else features[name] = Number(v);
        onChange({ ...input, kind: "tabular", features: { ...features }, exampleId: null, trueIndex: null });
      } });
    grid.append(h("label", { class: "field" }, h("span", { title: name }, name), field));
  }
  return h("div", { class: "tabular-editor" },
    h("div", { class: "hint" }, "Raw values; an empty field takes the model's default."), grid);
}

const RECENCY = [["yesterday", 1.0], ["last week", 0.89], ["last month", 0.61],
  ["3 months ago", 0.22], ["a year ago", 0.002]];

function recommenderEditor(spec, input, onChange) {
  const features = { ...(input?.features || {}) };
  const names = spec.featureNames || [];
  const titles = names.filter((n) => n.startsWith("watched:")).map((n) => n.slice(8));
  const genres = names.filter((n) => n.startsWith("genre:")).map((n) => n.slice(6));
  const emit = () => onChange({ ...input, kind: "tabular", features: { ...features },
    exampleId: null, trueIndex: null });
  const list = h("div", { class: "titles" });
  for (const t of titles) {
    const watched = (features[`watched:${t}`] || 0) > 0;
    const rec = features[`recent:${t}`] ?? 0;
    const sel = h("select", { "aria-label": `when you watched ${t}`, disabled: !watched,
      onchange: () => { features[`recent:${t}`] = Number(sel.value); emit(); } });
    const options = RECENCY.map(([label, v]) => [label, v]);
    if (watched && !options.some(([, v]) => Math.abs(v - rec) < 1e-3)) {
      options.push([`${Math.round(-60 * Math.log(Math.max(rec, 1e-6)))} days ago`, rec]);
    }
    for (const [label, v] of options) {
      sel.append(h("option", { value: v }, label));
    }
    sel.value = String(watched ? (options.find(([, v]) => Math.abs(v - rec) < 1e-3) || options[0])[1]
      : RECENCY[2][1]);
    const box = h("input", { type: "checkbox", checked: watched, name: `watched:${t}`,
      onchange: () => {
        sel.disabled = !box.checked;
        row.classList.toggle("on", box.checked);
        if (box.checked) {
          features[`watched:${t}`] = 1;
          features[`recent:${t}`] = Number(sel.value);
        } else {
          delete features[`watched:${t}`];
          delete features[`recent:${t}`];
        }
        emit();
      } });
    const row = h("div", { class: watched ? "title on" : "title" }, h("label", {}, box, t), sel);
    list.append(row);
  }
  const sliders = h("div", { class: "genres" });
  for (const g of genres) {
    const v = features[`genre:${g}`] || 0;
    const out = h("output", {}, v.toFixed(2));
    const range = h("input", { type: "range", min: 0, max: 1, step: 0.05, value: v,
      name: `genre:${g}`, "aria-label": `likes ${g}`,
      oninput: () => { out.textContent = Number(range.value).toFixed(2); },
      onchange: () => {
        const x = Number(range.value);
        if (x > 0) features[`genre:${g}`] = x; else delete features[`genre:${g}`];
        emit();
      } });
    sliders.append(h("label", { class: "genre" }, h("span", {}, g), range, out));
  }
  return h("div", { class: "recommender-editor" },
    h("div", { class: "hint" }, "Tick the titles this user watched, and how much they like each genre."),
    list, sliders);
}
