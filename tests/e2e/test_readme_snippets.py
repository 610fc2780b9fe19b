"""README's snippets run as pasted. Every ```bash / ```python block is either marked
``<!-- runs as pasted ... -->`` on the line above it, and then runs here, or listed in
NOT_RUN_HERE (commands that start or install things) by its first line.

How they run, with no text substituted: in a scratch directory laid out like the repository's
root for the snippets' relative paths (``model_store`` -> this checkout's, ``run/default`` ->
the session server's run directory), so ``RUN=run/default`` names the e2e instance. The marked
bash blocks run in order in one bash (``set -e``; later blocks use earlier variables, as in one
terminal); each python block runs alone with this checkout importable. A ``# -> text`` comment
on a line is a claim: the block's output contains ``text``. A block whose command is not
installed here (grpcurl) is skipped and says so."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

import pytest

from tests.e2e.conftest import ROOT

pytestmark = pytest.mark.e2e

MARK = "<!-- runs as pasted"
FENCE = re.compile(r"^```(bash|python)\n(.*?)^```", re.S | re.M)
CLAIM = re.compile(r"#\s*->\s*(.+?)\s*$", re.M)
# Blocks that start servers, install packages or need a GPU: read, not run, by this test.
NOT_RUN_HERE = (
    "make serve   # bootstraps .venv",
    "python3 -m venv .venv",
    "make serve              # the service",
    "make loadtest                       #",
)
OPTIONAL_TOOLS = ("grpcurl",)


def blocks() -> list[tuple[str, str, bool]]:
    """(language, code, marked) for every bash/python block of README.md, in order."""
    text = (ROOT / "README.md").read_text()
    out = []
    for m in FENCE.finditer(text):
        before = text[:m.start()].rstrip("\n").rsplit("\n", 1)[-1]
        out.append((m.group(1), m.group(2), before.startswith(MARK)))
    return out


def test_every_block_is_run_or_listed():
    unmarked = [code.split("\n", 1)[0] for _, code, marked in blocks() if not marked]
    unlisted = [first for first in unmarked if not first.startswith(NOT_RUN_HERE)]
    assert not unlisted, unlisted
    assert len(unmarked) == len(NOT_RUN_HERE), unmarked


@pytest.fixture(scope="module")
def workdir(server, tmp_path_factory):
    d = tmp_path_factory.mktemp("readme")
    (d / "model_store").symlink_to(ROOT / "model_store")
    (d / "run").mkdir()
    (d / "run" / "default").symlink_to(server.run_dir)
    return d


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    return env


def _check_claims(code: str, out: str) -> None:
    claims = CLAIM.findall(code)
    for claim in claims:
        assert claim in out, (claim, out[-3000:])


def _bash(workdir, codes: list[str]) -> str:
    script = "set -e\n" + "\n".join(codes)
    p = subprocess.run(["bash", "-c", script], cwd=workdir, env=_env(), capture_output=True,
                       text=True, timeout=300)
    assert p.returncode == 0, (p.stdout[-2000:], p.stderr[-2000:])
    for code in codes:
        _check_claims(code, p.stdout)
    return p.stdout


def _needs_missing_tool(code: str) -> bool:
    return any(re.search(rf"^\s*{t}\b", code, re.M) and shutil.which(t) is None
               for t in OPTIONAL_TOOLS)


def test_bash_blocks(workdir):
    marked = [code for lang, code, m in blocks() if lang == "bash" and m]
    assert marked
    _bash(workdir, [c for c in marked if not _needs_missing_tool(c)])
    assert (workdir / "digit.png").read_bytes()[:4] == b"\x89PNG"


def test_bash_blocks_with_optional_tools(workdir):
    marked = [code for lang, code, m in blocks() if lang == "bash" and m]
    if any(_needs_missing_tool(c) for c in marked):
        pytest.skip(f"{', '.join(OPTIONAL_TOOLS)} not installed here")
    _bash(workdir, marked)


@pytest.mark.parametrize("index", range(sum(1 for lang, _, m in blocks()
                                            if lang == "python" and m)))
def test_python_block(workdir, index):
    code = [c for lang, c, m in blocks() if lang == "python" and m][index]
    p = subprocess.run([sys.executable, "-c", code], cwd=workdir, env=_env(),
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, (code, p.stdout[-2000:], p.stderr[-3000:])
    _check_claims(code, p.stdout)
