"""The README's Python examples are complete programs: each ```python block runs verbatim.

A block must import asyncio, define ``async def main()`` and end with ``asyncio.run(main())``,
so that a user can paste it into a file and run it. It runs in a subprocess with this tree on
``PYTHONPATH``, must exit 0, and must print what its comments promise: the text after ``#``
on a ``print(...)`` line, and ``"..."`` in a ``# prints "..."`` comment.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"
_BLOCK = re.compile(r"^```python\n(.*?)^```$", re.DOTALL | re.MULTILINE)
_PRINT_COMMENT = re.compile(r"^\s*print\(.*\)\s*#\s*(.+?)\s*$")
_PRINTS = re.compile(r'#.*\bprints "([^"]+)"')


def python_blocks(text: str) -> list[str]:
    return _BLOCK.findall(text)


def program_problems(source: str) -> list[str]:
    """Why ``source`` is not a complete asyncio program (empty when it is one)."""
    try:
        tree = ast.parse(source)
    except SyntaxError as exc:
        return [f"not valid Python at line {exc.lineno}: {exc.msg}"]
    problems = []
    imports = {alias.name for node in tree.body if isinstance(node, ast.Import) for alias in node.names}
    if "asyncio" not in imports:
        problems.append("no top-level `import asyncio`")
    if not any(isinstance(node, ast.AsyncFunctionDef) and node.name == "main" for node in tree.body):
        problems.append("no top-level `async def main()`")
    last = tree.body[-1] if tree.body else None
    if not (isinstance(last, ast.Expr) and ast.unparse(last) == "asyncio.run(main())"):
        problems.append("does not end with `asyncio.run(main())`")
    return problems


def promised_output(source: str) -> list[str]:
    """What the block's comments say it prints."""
    out = []
    for line in source.splitlines():
        out += _PRINTS.findall(line)
        match = _PRINT_COMMENT.match(line)
        if match and not _PRINTS.search(line):
            out.append(match.group(1))
    return out


BLOCKS = python_blocks(README.read_text(encoding="utf-8"))


def test_readme_has_the_examples() -> None:
    assert len(BLOCKS) >= 2
    promised = [text for block in BLOCKS for text in promised_output(block)]
    # Codes print as RFC 7252 writes them, with their names.
    assert "2.05 Content" in promised and "2.04 Changed" in promised


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_block_runs(index: int, tmp_path: Path) -> None:
    source = BLOCKS[index]
    assert program_problems(source) == [], f"README python block {index + 1} is not a complete program"
    env = dict(os.environ)
    src = str(README.parent / "src")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH")) if p)
    script = tmp_path / f"example_{index + 1}.py"
    script.write_text(source, encoding="utf-8")
    result = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    lines = result.stdout.splitlines()
    for text in promised_output(source):
        assert any(text in line for line in lines), f"{text!r} not printed:\n{result.stdout}"


def test_a_fragment_is_not_a_program() -> None:
    fragment = (
        "from lwm2m.server.role import Server\n\n"
        "async with Server(port=5683) as server:\n"
        "    print(await server.read('ep', '/3/0'))\n"
    )
    assert program_problems(fragment)  # top-level async with: not even valid Python
    no_run = "import asyncio\n\nasync def main():\n    pass\n"
    assert program_problems(no_run) == ["does not end with `asyncio.run(main())`"]
    no_main = "import asyncio\n\nprint('2.05 Content')\n"
    assert "no top-level `async def main()`" in program_problems(no_main)
    assert program_problems("import asyncio\n\nasync def main():\n    pass\n\nasyncio.run(main())\n") == []


def test_promised_output_reads_the_comments() -> None:
    block = 'print(response.code)  # 2.04 Changed\nawait write()  # prints "lamp on"\nx = 1  # a note\n'
    assert promised_output(block) == ["2.04 Changed", "lamp on"]
