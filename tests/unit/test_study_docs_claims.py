"""Every claim id a study can emit (the literal ids in its source, including ones emitted only in some configs) is
named in its docs page, docs/studies/STUDY.md, which lists each claim with its rule."""

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
STUDIES = sorted(p for p in (ROOT / "src" / "lmlab" / "studies").glob("*.py")
                 if p.stem not in ("__init__", "base", "runner", "toy"))


def claim_ids(path: Path) -> set[str]:
    """Literal first arguments (or ``id=``) of ``Claim.judged`` / ``Claim`` / ``*_claim`` calls; ids built at run
    time (f-strings) are left out."""
    ids = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call):
            fn = ast.unparse(node.func)
            if fn in ("Claim.judged", "Claim") or fn.endswith("_claim"):
                arg = next((kw.value for kw in node.keywords if kw.arg == "id"), node.args[0] if node.args else None)
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                    ids.add(arg.value)
    return ids


@pytest.mark.parametrize("module", STUDIES, ids=lambda p: p.stem)
def test_every_claim_is_in_its_docs_page(module):
    page = ROOT / "docs" / "studies" / f"{module.stem.replace('_', '-')}.md"
    assert page.is_file(), f"{page} missing"
    text = page.read_text()
    ids = claim_ids(module)
    assert ids, f"no claim ids found in {module}"
    missing = sorted(i for i in ids if not re.search(rf"(?<![\w.]){re.escape(i)}(?![\w])", text))
    assert not missing, f"{page.name} does not name these claims of {module.name}: {missing}"
