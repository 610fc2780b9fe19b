// The explorer server's API (a proxy to the service's public API). The inference key lives in
// this tab only (sessionStorage) and goes with every call as "Authorization: Bearer <key>".

const KEY_STORE = "explorer.key";
const listeners = new Set();

export class ApiError extends Error {
  constructor(status, body) {
    super(body?.message || `HTTP ${status}`);
    this.status = status;
    this.code = body?.code || `HTTP_${status}`;
    this.field = body?.field || "";
    this.allowed = body?.allowed || [];
  }
  get keyRefused() { return this.code === "KEY_REFUSED"; }
}

export function getKey() { return sessionStorage.getItem(KEY_STORE) || ""; }

export function setKey(key) {
  if (key) sessionStorage.setItem(KEY_STORE, key);
  else sessionStorage.removeItem(KEY_STORE);
}

/** Called with the ApiError whenever the service refuses the key. */
export function onKeyRefused(fn) { listeners.add(fn); }

async function call(path, { method = "GET", body, signal } = {}) {
  const headers = {};
  const key = getKey();
  if (key) headers["Authorization"] = `Bearer ${key}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const r = await fetch(path, {
    method, headers, signal, cache: "no-store",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  let data = null;
  try { data = await r.json(); } catch { data = null; }
  if (!r.ok) {
    const err = new ApiError(r.status, data);
    if (err.keyRefused) listeners.forEach((fn) => fn(err));
    throw err;
  }
  return data;
}

export const api = {
  session: () => call("/api/session"),
  models: () => call("/api/models"),
  spec: (m) => call(`/api/models/${encodeURIComponent(m)}`),
  examples: (m) => call(`/api/models/${encodeURIComponent(m)}/examples`),
  predict: (m, req, signal) => call(`/api/models/${encodeURIComponent(m)}/predict`,
    { method: "POST", body: req, signal }),
  explain: (m, req, signal) => call(`/api/models/${encodeURIComponent(m)}/explain`,
    { method: "POST", body: req, signal }),
};

/** A protobuf-JSON Tensor ({shape, dtype, data: base64}) as {shape: number[], values}. */
export function decodeTensor(t) {
  if (!t || !t.data) return null;
  const shape = (t.shape || []).map(Number);
  const raw = atob(t.data);
  const bytes = new Uint8Array(raw.length);
  for (let i = 0; i < raw.length; i++) bytes[i] = raw.charCodeAt(i);
  const view = new DataView(bytes.buffer);
  const dtype = t.dtype || "FLOAT32";
  const size = { FLOAT64: 8, INT64: 8, FLOAT32: 4, INT32: 4, DTYPE_UNSPECIFIED: 4, UINT8: 1,
    FLOAT16: 2 }[dtype] || 4;
  const n = bytes.length / size;
  const values = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const o = i * size;
    values[i] = dtype === "FLOAT64" ? view.getFloat64(o, true)
      : dtype === "INT64" ? Number(view.getBigInt64(o, true))
      : dtype === "INT32" ? view.getInt32(o, true)
      : dtype === "UINT8" ? view.getUint8(o)
      : dtype === "FLOAT16" ? half(view.getUint16(o, true))
      : view.getFloat32(o, true);
  }
  return { shape, values };
}

function half(h) {
  const s = h & 0x8000 ? -1 : 1, e = (h >> 10) & 0x1f, f = h & 0x3ff;
  if (e === 0) return s * 2 ** -14 * (f / 1024);
  if (e === 31) return f ? NaN : s * Infinity;
  return s * 2 ** (e - 15) * (1 + f / 1024);
}
