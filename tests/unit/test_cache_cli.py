"""`lmlab cache`: put/get/stats/export/import/purge on a store, with the hashing embedder."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from lmlab.cli import app


def run(*args):
    return CliRunner().invoke(app, ["cache", *map(str, args)])


def test_cache_cli_round_trip(tmp_path):
    s = tmp_path / "store"
    r = run("put", "What is the capital of Peru?", "Lima.", "--store", s, "--embedder", "hashing", "--namespace", "demo")
    assert r.exit_code == 0, r.output
    r = run("put", "What is the capital of Peru?", "Lima!", "--store", s, "--embedder", "hashing", "--model", "m",
            "--param", "temperature=0", "--tenant", "acme")
    assert r.exit_code == 0, r.output
    r = run("get", "What is the capital of Peru?", "--store", s, "--embedder", "hashing", "--namespace", "demo")
    assert r.exit_code == 0 and json.loads(r.output)["response"] == "Lima."
    r = run("get", "Who painted this?", "--store", s, "--embedder", "hashing", "--namespace", "demo")
    assert r.exit_code == 1 and json.loads(r.output) == {"hit": False}
    stats = json.loads(run("stats", "--store", s).output)
    assert stats["entries"] == 2 and len(stats["namespaces"]) == 2
    assert run("export", "--store", s, "--out", tmp_path / "x.jsonl").exit_code == 0
    r = run("import", tmp_path / "x.jsonl", "--store", tmp_path / "s2", "--embedder", "hashing")
    assert r.exit_code == 0 and "imported 2" in r.output
    r = run("purge", "--store", s, "--namespace", "nope")
    assert r.exit_code == 2 and r.output.startswith("error: namespace:") and r.output.count("\n") == 1
    assert "purged 1" in run("purge", "--store", s, "--namespace", "demo").output
    r = run("get", "What is the capital of Peru?", "--store", s, "--embedder", "hashing", "--model", "m",
            "--param", "temperature=0", "--tenant", "acme")
    assert json.loads(r.output)["response"] == "Lima!"


def test_cache_cli_errors(tmp_path):
    r = run("stats", "--store", tmp_path / "none")
    assert r.exit_code == 2 and "no cache.sqlite" in r.output
    s = tmp_path / "s"
    run("put", "q?", "a", "--store", s, "--embedder", "hashing", "--namespace", "n")
    r = run("put", "", "a", "--store", s, "--embedder", "hashing", "--namespace", "n")
    assert r.exit_code == 2 and r.output.startswith("error: prompt: empty")
    r = run("put", "q?", "a", "--store", s, "--embedder", "hashing")
    assert r.exit_code == 2 and "--namespace" in r.output
