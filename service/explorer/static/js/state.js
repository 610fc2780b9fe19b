// The view's state, kept in the URL hash so a view can be shared (never the key):
// #model=digits&example=digits-3&panels=[...]&pred=any&true=any&wrong=0&input={...}

const FIELDS = ["model", "example", "pred", "true", "kind", "wrong"];
const JSON_FIELDS = ["panels", "input"];

export function readState() {
  const q = new URLSearchParams(location.hash.slice(1));
  const s = {};
  for (const f of FIELDS) if (q.has(f)) s[f] = q.get(f);
  for (const f of JSON_FIELDS) {
    if (!q.has(f)) continue;
    try { s[f] = JSON.parse(q.get(f)); } catch { /* a hand-edited URL: ignore the field */ }
  }
  return s;
}

export function writeState(s) {
  const q = new URLSearchParams();
  for (const f of FIELDS) if (s[f] !== undefined && s[f] !== null && s[f] !== "") q.set(f, s[f]);
  for (const f of JSON_FIELDS) if (s[f] !== undefined && s[f] !== null) q.set(f, JSON.stringify(s[f]));
  const hash = "#" + q.toString();
  if (hash !== location.hash) history.replaceState(null, "", hash);
}
