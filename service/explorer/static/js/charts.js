// Drawings: signed attribution bars (SVG), class-probability bars, image overlays (canvas),
// a text model's token-by-token matrix (a table heatmap).
import { h, fmt } from "./dom.js";

const POS = "#d9480f", NEG = "#1c7ed6";

/** One bar per feature, sorted by |attribution|; bars right of the axis are positive. */
export function signedBars(rows, { maxRows = Infinity } = {}) {
  const sorted = [...rows].sort((a, b) => Math.abs(b.attribution) - Math.abs(a.attribution))
    .slice(0, maxRows);
  const peak = Math.max(1e-12, ...sorted.map((r) => Math.abs(r.attribution)));
  const W = 460, labelW = 190, valueW = 62, rowH = 17, top = 4;
  const plotW = W - labelW - valueW, mid = labelW + plotW / 2;
  const H = top * 2 + rowH * sorted.length;
  const svg = h("svg", { class: "bars", viewBox: `0 0 ${W} ${H}`, width: W, height: H,
    role: "img", "aria-label": "attribution by feature" });
  svg.append(h("line", { class: "axis", x1: mid, x2: mid, y1: 0, y2: H }));
  sorted.forEach((r, i) => {
    const y = top + i * rowH;
    const len = (Math.abs(r.attribution) / peak) * (plotW / 2 - 2);
    const x = r.attribution >= 0 ? mid : mid - len;
    const sign = r.attribution > 0 ? "pos" : r.attribution < 0 ? "neg" : "zero";
    const g = h("g", { class: `row ${sign}` });
    g.append(
      h("title", {}, `${r.name} = ${fmt(r.value, 4)}: attribution ${r.attribution}`),
      h("text", { class: "label", x: labelW - 6, y: y + rowH * 0.7, "text-anchor": "end" },
        short(r.name, 30)),
      h("rect", { class: `bar ${sign}`, x, y: y + 2, width: Math.max(len, 0.5), height: rowH - 5,
        fill: r.attribution >= 0 ? POS : NEG, rx: 2,
        dataset: { feature: r.name, value: String(r.attribution),
          ...(r.index === undefined ? {} : { index: String(r.index) }) } }),
      h("text", { class: "value", x: W - 2, y: y + rowH * 0.7, "text-anchor": "end" },
        fmt(r.attribution)),
    );
    svg.append(g);
  });
  return svg;
}

/** A text answer's (n_out, n_in) attribution matrix as a table: one row per answer token, one
 *  column per input feature, each cell coloured by its signed value (red +, blue -, the
 *  strength |v| / peak) with the value in its title and data-value. */
export function tokenMatrix(outputTokens, inputFeatures, tensor) {
  const n = inputFeatures.length;
  const peak = Math.max(1e-12, ...Array.from(tensor.values, Math.abs));
  return h("table", { class: "token-matrix" },
    h("thead", {}, h("tr", {}, h("th", {}, ""), inputFeatures.map((f) => h("th", { scope: "col" }, f)))),
    h("tbody", {}, outputTokens.map((tok, i) => h("tr", {}, h("th", { scope: "row" }, tok),
      inputFeatures.map((f, j) => {
        const v = tensor.values[i * n + j];
        const a = Math.min(1, Math.abs(v) / peak);
        const cell = h("td", { title: `${f} → ${tok}: ${v}`,
          dataset: { row: String(i), col: String(j), value: String(v) } }, fmt(v, 2));
        const [r, g, b] = v >= 0 ? [217, 72, 15] : [28, 126, 214];
        cell.style.background = `rgba(${r}, ${g}, ${b}, ${(0.85 * a).toFixed(3)})`;
        if (a > 0.55) cell.style.color = "#fff";
        return cell;
      })))));
}

/** Horizontal probability bars for the top classes; the true class is marked. */
export function classBars(top, trueIndex) {
  return h("ol", { class: "classes" }, top.map((c) => {
    const bar = h("span", { class: "fill" });
    bar.style.width = `${Math.max(0.5, 100 * (c.probability || 0))}%`;
    const isTrue = trueIndex !== null && trueIndex !== undefined && Number(c.index) === trueIndex;
    return h("li", { class: isTrue ? "true" : "", dataset: { index: String(c.index ?? 0) } },
      h("span", { class: "name", title: c.label }, c.label, isTrue ? " ✓" : ""),
      h("span", { class: "track" }, bar),
      h("span", { class: "p" }, `${(100 * (c.probability || 0)).toFixed(1)}%`));
  }));
}

function short(s, n) { return s.length > n ? s.slice(0, n - 1) + "…" : s; }

/** The attribution map (channels summed) over a dimmed copy of the input picture, on a canvas
 *  of the map's own size (H x W); red = positive, blue = negative, alpha = |a| / peak. */
export async function overlay(imageSrc, tensor) {
  const [C, H, W] = tensor.shape.length === 4 ? tensor.shape.slice(1) : tensor.shape;
  const sum = new Float64Array(H * W);
  for (let c = 0; c < C; c++) for (let i = 0; i < H * W; i++) sum[i] += tensor.values[c * H * W + i];
  const peak = Math.max(1e-12, percentile(sum.map(Math.abs), 0.995));
  const canvas = h("canvas", { class: "overlay", width: W, height: H });
  const ctx = canvas.getContext("2d");
  if (imageSrc) {
    const img = await loadImage(imageSrc);
    ctx.drawImage(img, 0, 0, W, H);
  } else {
    ctx.fillStyle = "#fff";
    ctx.fillRect(0, 0, W, H);
  }
  const px = ctx.getImageData(0, 0, W, H);
  const d = px.data;
  for (let i = 0; i < H * W; i++) {
    const grey = 0.3 * d[4 * i] + 0.59 * d[4 * i + 1] + 0.11 * d[4 * i + 2];
    const base = 40 + 0.55 * grey;                       // dimmed, desaturated input
    const v = Math.max(-1, Math.min(1, sum[i] / peak));
    const a = Math.abs(v);
    const [r, g, b] = v >= 0 ? [255, 80, 20] : [30, 120, 255];
    d[4 * i] = base * (1 - a) + r * a;
    d[4 * i + 1] = base * (1 - a) + g * a;
    d[4 * i + 2] = base * (1 - a) + b * a;
    d[4 * i + 3] = 255;
  }
  ctx.putImageData(px, 0, 0);
  return canvas;
}

function percentile(values, q) {
  const s = Array.from(values).sort((a, b) => a - b);
  return s.length ? s[Math.min(s.length - 1, Math.floor(q * (s.length - 1)))] : 0;
}

export function loadImage(src) {
  return new Promise((resolve, reject) => {
    const img = new Image();
    img.onload = () => resolve(img);
    img.onerror = () => reject(new Error("cannot decode the image"));
    img.src = src;
  });
}
