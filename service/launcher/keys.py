"""TorchServe's token keys (key_file.json) and their renewal before they expire.

TorchServe 0.12 writes ``management``, ``inference`` (each with an ``expiration time``) and
``API`` keys to key_file.json. After ``token_expiration_min`` (default 60) an expired key is
refused on every request, and TorchServe never renews it by itself. Its own token API renews
one: ``GET <management>/token?type=inference|management`` with the API key generates a new key
and a new expiry and rewrites key_file.json (mode 600). The old key stops working at once, so
clients re-read the file when TorchServe refuses their key (the gateway re-reads it per call).
Keys are never logged here.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import pathlib
import stat
import urllib.error
import urllib.request
from dataclasses import dataclass

RENEWED_KINDS = ("inference", "management")


@dataclass(frozen=True)
class Key:
    kind: str
    key: str
    expires: dt.datetime | None  # UTC; None for the API key, which does not expire


def _parse_instant(text: str) -> dt.datetime:
    """Java's ``Instant.toString()``: ``2024-02-16T21:12:24.801167Z`` (0-9 fraction digits)."""
    base, _, frac = text.rstrip("Z").partition(".")
    micros = int((frac + "000000")[:6]) if frac else 0
    return dt.datetime.fromisoformat(base).replace(microsecond=micros, tzinfo=dt.timezone.utc)


def read_keys(key_file: pathlib.Path) -> dict[str, Key]:
    """Every key in the file; raises OSError/ValueError while the file is missing or being
    rewritten (TorchServe rewrites it in place)."""
    data = json.loads(pathlib.Path(key_file).read_text())
    out = {}
    for kind, entry in data.items():
        if isinstance(entry, dict) and entry.get("key"):
            when = entry.get("expiration time")
            out[kind] = Key(kind, str(entry["key"]), _parse_instant(when) if when else None)
    if "API" not in out:
        raise ValueError(f"{key_file} has no API key")
    return out


def seconds_left(key: Key, now: dt.datetime | None = None) -> float:
    if key.expires is None:
        return float("inf")
    now = now or dt.datetime.now(dt.timezone.utc)
    return (key.expires - now).total_seconds()


def renew_margin_s(lifetime_s: float) -> float:
    """How long before expiry a key is renewed: a quarter of its lifetime, 5 s to 10 min."""
    return min(max(lifetime_s / 4.0, 5.0), 600.0)


def renew(management_url: str, key_file: pathlib.Path, kind: str, timeout: float = 10.0) -> Key:
    """Asks TorchServe for a new ``kind`` key with the API key; returns the new key as the
    rewritten file holds it. Raises RuntimeError when TorchServe refuses or the file did not
    change."""
    if kind not in RENEWED_KINDS:
        raise ValueError(f"kind must be one of {RENEWED_KINDS}, not {kind!r}")
    before = read_keys(key_file)
    req = urllib.request.Request(f"{management_url}/token?type={kind}",
                                 headers={"Authorization": f"Bearer {before['API'].key}"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            r.read()
    except urllib.error.HTTPError as e:
        raise RuntimeError(f"TorchServe refused to renew the {kind} key: HTTP {e.code}") from None
    except OSError as e:
        raise RuntimeError(f"TorchServe's token API unreachable: {e}") from None
    after = read_keys(key_file)[kind]
    if after.key == before[kind].key:
        raise RuntimeError(f"TorchServe answered but key_file.json still holds the old {kind} key")
    ensure_private(key_file)
    return after


def ensure_private(key_file: pathlib.Path) -> None:
    """Mode 600, whatever wrote the file."""
    mode = stat.S_IMODE(os.stat(key_file).st_mode)
    if mode & 0o077:
        os.chmod(key_file, 0o600)
