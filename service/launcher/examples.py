"""Example requests for a started instance: bodies under ``<run_dir>/examples/`` and the banner
``make serve`` prints (curl lines per model, the gRPC client and grpcurl)."""

from __future__ import annotations

import base64
import io
import json
import pathlib
import zipfile

from .torchserve import Server


def _sample_array(mar: pathlib.Path, spec: dict):
    """A real example input from the archive's reference set or mean, else zeros."""
    import numpy as np
    import torch

    shape = tuple(spec["input"]["shape"])
    defs = (spec.get("baselines") or {}).get("definitions") or {}
    files = [d.get("file") for d in defs.values() if d.get("kind") == "reference_set"]
    files += [d.get("file") for d in defs.values() if d.get("kind") == "tensor"]
    with zipfile.ZipFile(mar) as z:
        names = set(z.namelist())
        for f in files:
            if f and f in names:
                t = torch.load(io.BytesIO(z.read(f)), map_location="cpu", weights_only=True)
                return np.asarray(t, dtype=np.float64).reshape(-1, *shape)[0]
    return np.zeros(shape)


def write_examples(server: Server, store: pathlib.Path) -> dict[str, list[str]]:
    """Example bodies under run/<instance>/examples/ and the curl lines that send them."""
    import numpy as np

    out: dict[str, list[str]] = {}
    auth = ' -H "Authorization: Bearer $KEY"' if server.auth else ""
    ex_dir = server.run_dir / "examples"
    for name, spec in server.models.items():
        mar = store / f"{name}.mar"
        x = _sample_array(mar, spec)
        inp = spec["input"]
        lines = []
        if inp["kind"] == "text":   # a causal LM: its spec's example prompt, as a template
            example = (inp.get("text") or {}).get("example") or {
                "template": "{word}", "values": {"word": "hello"}}
            body = {"inputs": {"template": example}, "outputs": {"heatmap": False}}
            lines.append(f"curl -s{auth} {server.inference_url}/predictions/{name} "
                         f"-H 'Content-Type: application/json' -d @{ex_dir / f'{name}.json'}")
        elif inp["kind"] == "image":
            from PIL import Image

            im = inp.get("image") or {}
            mean = np.asarray(im.get("mean", [0.0])).reshape(-1, 1, 1)
            std = np.asarray(im.get("std", [1.0])).reshape(-1, 1, 1)
            pix = x * std + mean
            if im.get("invert"):
                pix = 1.0 - pix
            pix = np.clip(pix * float(im.get("scale", 255.0)), 0, 255).astype(np.uint8)
            mode = im.get("mode", "L")
            img = Image.fromarray(pix[0] if mode == "L" else pix.transpose(1, 2, 0), mode)
            png = ex_dir / f"{name}.png"
            img.save(png)
            body = {"inputs": {"image": base64.b64encode(png.read_bytes()).decode()},
                    "algorithm": spec.get("explain", {}).get("default_algorithm", ""),
                    "target": {"topK": 2}, "outputs": {"topFeatures": 3, "attributions": False}}
            lines.append(f"curl -s{auth} {server.inference_url}/predictions/{name} -T {png}")
            lines.append(f"curl -s{auth} {server.inference_url}/explanations/{name} -T {png}")
        else:
            values = x.reshape(-1)
            scaler = inp.get("scaler")
            if scaler:
                values = values * np.asarray(scaler["std"]) + np.asarray(scaler["mean"])
            feats = {n: round(float(v), 4) for n, v in zip(inp.get("feature_names", []), values)
                     if abs(v) > 1e-9}
            body = {"inputs": {"tabular": {"features": feats}},
                    "outputs": {"topFeatures": 5, "attributions": False}}
            lines.append(f"curl -s{auth} {server.inference_url}/predictions/{name} "
                         f"-H 'Content-Type: application/json' -d @{ex_dir / f'{name}.json'}")
        path = ex_dir / f"{name}.json"
        path.write_text(json.dumps(body, indent=1))
        lines.append(f"curl -s{auth} {server.inference_url}/explanations/{name} "
                     f"-H 'Content-Type: application/json' -d @{path}")
        out[name] = lines
    return out


def explorer_url(server: Server) -> str | None:
    """The explorer page's URL when the launcher started it (its pid file exists)."""
    if "explorer" not in server.ports or not (server.run_dir / "tmp" / "explorer.pid").is_file():
        return None
    return f"http://127.0.0.1:{server.ports['explorer']}/"


def print_banner(server: Server, store: pathlib.Path, instance: str) -> None:
    examples = write_examples(server, store)
    p = print
    p(f"\nTorchServe is up (instance {instance!r}, run directory {server.run_dir})")
    p(f"  inference  {server.inference_url}   management {server.management_url}   "
      f"metrics {server.metrics_url}/metrics")
    p(f"  gRPC       Explainer gateway 127.0.0.1:{server.ports['gateway']}   "
      f"(TorchServe's own gRPC 127.0.0.1:{server.ports['grpc_inference']})   "
      f"logs {server.run_dir}/logs")
    if explorer_url(server):
        p(f"  explorer   {explorer_url(server)}   (the web page; paste the inference key once)")
    workers = server.worker_pids()
    if workers:
        threads = f"{server.threads} torch thread(s) each" if server.threads else "torch's threads"
        p("  workers    " + ", ".join(f"{m} {len(pids)}" for m, pids in workers.items())
          + f"   ({threads}; WORKERS=n for n per model)")
    p(f"  supervisor (restarts the gateway, renews the keys): pid file "
      f"{server.run_dir}/tmp/supervisor.pid, log {server.run_dir}/logs/supervisor.log")
    if server.auth:
        p(f"\nToken authorization is ON. Keys: {server.key_file} (the inference and management "
          f"keys live {server.token_expiration_min:g} min; the supervisor renews them before "
          "they expire and rewrites that file,\nso read the key from it again when TorchServe "
          "answers 400 / PERMISSION_DENIED). Set the key in your shell first:")
        p(f"  export KEY=$(python3 -c \"import json; print(json.load(open('{server.key_file}'))"
          "['inference']['key'])\")")
    else:
        p("\nToken authorization is OFF (AUTH=off): local use only.")
    for name, lines in examples.items():
        purpose = server.models[name].get("purpose", "production")
        note = ("  [load testing only: untrained weights]"
                if purpose == "load_test_only" and "LOAD TEST" not in
                str(server.models[name].get("description", "")).upper() else "")
        p(f"\n# {name}: {server.models[name].get('description', '')}{note}")
        for line in lines:
            p(f"  {line}")
    token = ", token=KEY" if server.auth else ""
    first = next(iter(server.models), "digits")
    p("\n# gRPC, with the Python client (service.client) or grpcurl (reflection is on):")
    p(f"  .venv/bin/python -c \"import os; from service.client import ExplainClient; "
      f"KEY=os.environ.get('KEY'); c=ExplainClient('127.0.0.1:{server.ports['gateway']}'{token}); "
      f"print([m.name for m in c.list_models()])\"")
    auth_h = " -H \"authorization: Bearer $KEY\"" if server.auth else ""
    p(f"  grpcurl -plaintext{auth_h} -d '{{\"model\": \"{first}\"}}' "
      f"127.0.0.1:{server.ports['gateway']} explain.v1.Explainer/GetModelSpec")
    p(f"\nStop it with: make serve-stop INSTANCE={instance}\n")


