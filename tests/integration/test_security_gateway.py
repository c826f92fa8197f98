"""`lmlab redteam --target gateway`: `lmlab serve` subprocesses (echo backend) with defences on and off, attacked
over HTTP with the openai client."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.slow


def test_gateway_variants_over_http(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from lmlab.cli import app

    monkeypatch.setenv("LMLAB_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "gw"
    r = CliRunner().invoke(app, ["redteam", "--target", "gateway", "--gateway-model", "fake", "--suite", "injection",
                                 "--suite", "cache-poison", "--defence", "plain", "--defence", "injection-block",
                                 "--defence", "shared-tenant", "--n", "6", "--cache-threshold", "0.3",
                                 "--out", str(out), "--no-progress"])
    assert r.exit_code == 0, r.output
    s = json.loads((out / "summary.json").read_text())
    inj = s["suites"]["injection"]
    # an echo backend copies everything: attack and inert-canary control alike, so the net rate is 0
    plain = inj["gateway:plain"]
    assert plain["attack"]["rate"] > 0 and plain["attack"]["rate"] == plain["echo"]["rate"] and plain["net"]["net"] == 0
    assert inj["gateway:injection-block"]["blocked_attack"]["k"] > 0  # the gateway's tripwire refused some (HTTP 400)
    cp = s["suites"]["cache-poison"]
    assert cp["plain"]["all"]["k"] == 0  # separate tenants: a namespace is a wall
    assert cp["shared-tenant"]["all"]["k"] > 0  # one tenant: the attacker's cached answer is served to the victim
    assert (out / "attempts-gateway-injection.jsonl").exists() and (out / "attack-success.png").exists()
