"""The package's layers point one way (docs/architecture.md): no module imports a layer above its own."""

import ast
from pathlib import Path

import lmlab

ROOT = Path(lmlab.__file__).parent
#: lower rank = lower layer. A module may import its own package and any package of a lower rank, or of the
#: same rank; never a higher one. Unlisted packages fail the test, so a new room is placed on purpose.
RANK = {
    "__init__": 0, "claims": 0, "config": 0, "registry": 0, "io": 0, "report": 0,
    "lm": 1, "nn": 1, "train": 1, "tokenizers": 1,
    "tasks": 2, "analysis": 2,
    "routing": 3, "moderation": 3, "rewardeval": 3, "cache": 3, "imaging": 3,
    "zoo": 4,  # trains tiny models into a routing correctness matrix
    "selfimprove": 4, "security": 4,
    "studies": 5, "serve": 5,
    "sweep": 6, "cli": 6, "__main__": 7,
}


def _imports(path: Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
    return {m.split(".")[1] for m in out if m.startswith("lmlab.") and len(m.split(".")) > 1}


def test_no_upward_imports():
    bad = []
    for path in sorted(ROOT.rglob("*.py")):
        room = path.relative_to(ROOT).parts[0].removesuffix(".py")
        assert room in RANK, f"{room}: new package; give it a layer in RANK (and in docs/architecture.md)"
        for target in _imports(path):
            assert target in RANK, f"{path}: imports unknown lmlab.{target}"
            if target != room and RANK[target] > RANK[room]:
                bad.append(f"{path.relative_to(ROOT)} (layer {RANK[room]}) imports lmlab.{target} (layer {RANK[target]})")
            if target == "studies" and room not in ("studies", "cli", "sweep", "__main__"):
                bad.append(f"{path.relative_to(ROOT)} imports a study")
            if target == "serve" and room not in ("serve", "cli", "__main__"):
                bad.append(f"{path.relative_to(ROOT)} imports serve internals")
    assert not bad, "\n".join(bad)
