"""Container health check: TorchServe's /ping answers Healthy (with the inference key when token
authorization is on; the key file is TorchServe's key_file.json in /app)."""

import json
import os
import pathlib
import sys
import urllib.request

PING_URL = os.environ.get("HEALTHCHECK_URL", "http://127.0.0.1:8080/ping")
KEY_FILE = pathlib.Path(os.environ.get("HEALTHCHECK_KEY_FILE", "/app/key_file.json"))


def main() -> int:
    request = urllib.request.Request(PING_URL)
    if KEY_FILE.exists():
        entry = json.loads(KEY_FILE.read_text()).get("inference", {})
        key = entry.get("key") if isinstance(entry, dict) else entry
        if key:
            request.add_header("Authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(request, timeout=4) as response:
            return 0 if json.load(response).get("status") == "Healthy" else 1
    except (OSError, ValueError):
        return 1


if __name__ == "__main__":
    sys.exit(main())
