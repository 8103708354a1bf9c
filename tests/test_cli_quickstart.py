"""What a newcomer tries first (issue 11 §2 items 1, 7, 11 and 12): the quick start's
install, the package's lazy submodules, and documentation that points only to files
that exist and says what the code does.

The quick start itself (a fresh virtual environment, ``bash scripts/bootstrap.sh``,
then ``respkv bench`` and ``pytest``) needs a package index and minutes; ``.ci/run``
runs it for real. Here the install line is checked for what broke it: respkv was
installed with ``--no-deps``, so a fresh venv lacked its dependency typing_extensions.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

#: The checkout (not respkv.__file__: an installed respkv lives in site-packages).
ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def test_bootstrap_installs_respkv_with_its_dependencies() -> None:
    script = (ROOT / "scripts" / "bootstrap.sh").read_text()
    commands = [line for line in script.splitlines() if not line.lstrip().startswith("#")]
    installs = [line for line in commands if '".[test]"' in line or re.search(r"\s\.$", line)]
    assert installs, "bootstrap.sh no longer installs the project"
    for line in installs:
        assert "--no-deps" not in line, line
    assert any('".[test]"' in line for line in installs)  # the one test-dependency list
    tomllib = pytest.importorskip("tomllib", reason="Python 3.11+ reads pyproject.toml")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert "test" in project["optional-dependencies"]
    assert any(dep.startswith("typing_extensions") for dep in project["dependencies"])


def test_readme_quick_start_uses_a_fresh_virtual_environment() -> None:
    readme = (ROOT / "README.md").read_text()
    quick = readme[readme.index("## Quick start") : readme.index("## Use")]
    assert "python3 -m venv" in quick
    assert "bash scripts/bootstrap.sh && respkv bench" in quick
    assert "bash scripts/bootstrap.sh && pytest" in quick


def test_submodules_load_on_attribute_access() -> None:
    # A fresh interpreter: in this one the test suite has imported them already.
    code = (
        "import sys, respkv\n"
        "assert 'respkv.aio' not in sys.modules and 'respkv.config' not in sys.modules\n"
        "print(respkv.aio.connect.__module__, respkv.config.load.__module__,\n"
        "      respkv.kvstore.KVStore.__name__, respkv.chunksize.preset.__name__)\n"
        "assert 'aio' in dir(respkv)\n"
        "try:\n"
        "    respkv.nosuch\n"
        "except AttributeError as e:\n"
        "    print(e)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "respkv.aio respkv.config KVStore preset"
    assert lines[1] == "module 'respkv' has no attribute 'nosuch'"


def _references(doc: Path) -> list[str]:
    text = doc.read_text()
    links = [m.group(1) for m in re.finditer(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text)]
    names = [m.group(1) for m in re.finditer(r"(?<![\w/(\[.-])(\w[\w/.-]*\.md)\b", text)]
    return [ref for ref in links + names if "://" not in ref]


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_documents_reference_only_files_that_exist(doc: Path) -> None:
    for ref in _references(doc):
        assert (doc.parent / ref).exists() or (ROOT / ref).exists(), f"{doc.name}: {ref}"


def test_configuration_doc_says_native_supports_tls() -> None:
    text = (ROOT / "docs" / "configuration.md").read_text()
    assert "refuses a TLS configuration" not in text
    assert "Both backends support TLS" in text
