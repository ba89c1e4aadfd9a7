"""The README's example runs as written."""
import pathlib
import re

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def test_readme_example_runs():
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "README has no python example"
    for code in blocks:
        if "import torch" in code:
            try:
                import torch  # noqa: F401  (optional dependency: its example needs it)
            except ImportError:
                continue
        exec(compile(code, "README.md", "exec"), {})
