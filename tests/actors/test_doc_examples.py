"""The docs and the code agree: every shell and Python example in README.md and docs/*.md runs
against a real one-member node and succeeds, or says why it cannot run with an HTML comment
on the line before it (``<!-- not run: REASON -->``: other hosts, a benchmark, a prompt).

An example is run as a reader would paste it: its ``tcp://127.0.0.1:2379`` is the node's client
URL (``etcdzctl`` finds it in ``ETCDZCTL_ENDPOINTS`` when the example names none), ``.venv/bin/``
is this Python's, and the examples of one page run in order in one directory, so a later one
may use a file an earlier one wrote (``snapshot save`` then ``snapshot status``).
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tools.cluster import LocalCluster

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
RUN = {"sh": "shell", "bash": "shell", "python": "python"}
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)
NOT_RUN = re.compile(r"<!-- not run: (.+?) -->\n$")
DEFAULT_ENDPOINT = "tcp://127.0.0.1:2379"


@dataclass(frozen=True)
class Example:
    page: str
    line: int
    kind: str  # shell or python
    code: str
    not_run: str  # why it cannot run ("" when it runs)


def examples(page: Path) -> list[Example]:
    text = page.read_text()
    found = []
    for m in FENCE.finditer(text):
        if m.group(1) not in RUN:
            continue
        before = text[: m.start()]
        reason = NOT_RUN.search(before[before.rfind("\n", 0, len(before) - 1) + 1 :])
        found.append(
            Example(
                page=str(page.relative_to(ROOT)),
                line=before.count("\n") + 1,
                kind=RUN[m.group(1)],
                code=m.group(2),
                not_run=reason.group(1).strip() if reason else "",
            )
        )
    return found


def test_every_page_has_examples_and_every_skipped_one_says_why() -> None:
    every = [e for page in PAGES for e in examples(page)]
    assert sum(1 for e in every if not e.not_run) >= 10
    for e in every:
        if e.not_run:
            assert len(e.not_run) > 10, f"{e.page}:{e.line}: say why it cannot run"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_the_examples_of_a_page_run_against_a_real_node(
    page: Path, shared_node: LocalCluster, tmp_path: Path
) -> None:
    endpoint = shared_node.endpoints[0]
    bin_dir = str(Path(sys.executable).parent)
    env = {
        **os.environ,
        "PATH": os.pathsep.join([bin_dir, os.environ.get("PATH", "")]),
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
        "ETCDZCTL_ENDPOINTS": endpoint,
    }
    for e in examples(page):
        if e.not_run:
            continue
        code = e.code.replace(DEFAULT_ENDPOINT, endpoint).replace(".venv/bin/", "")
        if e.kind == "shell":
            argv = ["bash", "-e", "-o", "pipefail", "-c", code]
        else:
            argv = [sys.executable, "-c", code]
        # A session of its own: whatever the example leaves running (a `&` job) is killed with
        # it, on success and on timeout alike.
        proc = subprocess.Popen(
            argv,
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            out, err = proc.communicate(timeout=180)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        assert proc.returncode == 0, f"{e.page}:{e.line} failed:\n{out}\n{err}"
