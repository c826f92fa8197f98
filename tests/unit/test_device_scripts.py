"""scripts/device/<study>.sh, checked without a GPU: bash syntax, the pieces every device run needs (timeout,
PYTHONPATH=src, --device cuda, results under $OUT), and every ``--set key=value`` applied to the study's config
(the default one, or the --quick one when the script runs --quick)."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from lmlab.config import apply_overrides
from lmlab.studies import STUDIES
from lmlab.studies.runner import resolve_study

ROOT = Path(__file__).resolve().parents[2]
DEVICE = ROOT / "scripts" / "device"
SCRIPTS = sorted(p for p in DEVICE.glob("*.sh") if p.stem in STUDIES.names())
HELPERS = sorted(p for p in DEVICE.glob("*.sh") if p.stem not in STUDIES.names())
UNSUPPORTED = "# DEVICE: cannot run"


def _logical(text: str) -> str:
    """The script with its line continuations joined and comments dropped."""
    lines = [ln for ln in text.replace("\\\n", " ").splitlines() if not ln.lstrip().startswith("#")]
    return "\n".join(lines)


def test_device_scripts_exist():
    assert {p.stem for p in SCRIPTS} >= {"two-hop", "extreme-tokens", "tokenization", "ideal", "token-assorted",
                                         "security", "reward-eval", "embedllm", "prompt-cache"}


@pytest.mark.skipif(shutil.which("bash") is None, reason="no bash")
@pytest.mark.parametrize("path", SCRIPTS + HELPERS, ids=lambda p: p.name)
def test_bash_syntax(path):
    r = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("path", SCRIPTS, ids=lambda p: p.stem)
def test_script_shape(path):
    text = path.read_text()
    assert "set -euo pipefail" in text or "_common.sh" in text
    if UNSUPPORTED in text:  # a study that cannot run there says why and exits 2
        assert re.search(r"^exit 2$", text, re.M), f"{path.name}: marked '{UNSUPPORTED}' but does not exit 2"
        return
    body = _logical(text)
    assert "source \"$(dirname \"$0\")/_common.sh\"" in body  # set -euo pipefail, $OUT, run_study, collect()
    assert "preflight" in body
    # the limit, --device cuda, PYTHONPATH and the copy into $OUT are in _common.sh's run_study (checked below)
    assert re.search(r"^(THREADS=\d+ )?run_study " + re.escape(path.stem) + r"\b", body, re.M)
    assert "UNMEASURED" in text, f"{path.name}: the header must give its (unmeasured) runtime estimate"


def test_common_writes_under_out_and_checks_cuda():
    text = (DEVICE / "_common.sh").read_text()
    assert "set -euo pipefail" in text
    assert "OUT=${OUT:-runs/device}" in text
    assert "torch.cuda.is_available()" in text
    assert 'cp "$run/summary.json" "$OUT/' in text
    run_study = _logical(text).split("run_study() {", 1)[1].split("\n}", 1)[0]
    for piece in ("PYTHONPATH=src", "timeout 480", "-m lmlab run \"$study\" --device cuda", 'tee "$OUT/$study.log"',
                  'finish "$study"'):
        assert piece in run_study, piece


def _sets(body: str) -> list[str]:
    """The ``--set`` values of the script's ``run_study`` line, shell-unquoted (no variable expansion)."""
    line = next(ln for ln in body.splitlines() if re.match(r"(THREADS=\d+ )?run_study ", ln))
    words = shlex.split(line, comments=False)
    return [words[i + 1] for i, w in enumerate(words) if w == "--set"]


@pytest.mark.parametrize("path", [p for p in SCRIPTS if UNSUPPORTED not in p.read_text()], ids=lambda p: p.stem)
def test_set_keys_are_valid(path):
    body = _logical(path.read_text())
    study = resolve_study(path.stem)
    quick = re.search(r"run_study \S+ .*--quick", body) is not None
    cfg = study.quick_config() if quick else study.default_config()
    overrides = []
    for item in _sets(body):
        key, _, value = item.partition("=")
        if "$" in value:  # a path known only on the device machine: check the key with a stand-in value
            value = '"/tmp/placeholder"'
        overrides.append(f"{key}={value}")
    apply_overrides(cfg, overrides)  # raises ConfigError on an unknown key or a bad value


@pytest.mark.parametrize("study", ["tpo", "meta-rewarding"])
def test_selfimprove_script_set_keys_are_valid(study):
    """scripts/device/selfimprove.sh runs either study with shared and per-study overrides, kept in bash arrays."""
    text = _logical((DEVICE / "selfimprove.sh").read_text())
    assert "_common.sh" in text and 'run_study "$STUDY" --quick' in text
    common = re.search(r"COMMON=\((.*?)\)", text, re.S).group(1)
    extras = re.findall(r"EXTRA=\((.*?)\)", text, re.S)
    extra = extras[0] if study == "tpo" else extras[1]
    words = shlex.split(common + " " + extra)
    sets = [words[i + 1] for i, w in enumerate(words) if w == "--set"]
    assert sets
    apply_overrides(resolve_study(study).quick_config(), sets)
