"""The README's Python example runs as written and prints what it says,
under every start method."""

import multiprocessing
import os
import pathlib
import re
import subprocess
import sys

import pytest

README = pathlib.Path(__file__).resolve().parents[2] / "README.md"


def readme_example() -> str:
    text = README.read_text()
    section = text.split("## Python: `import shmring`", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


@pytest.mark.parametrize("method", multiprocessing.get_all_start_methods())
def test_the_readme_example_prints_what_it_says(tmp_path, method):
    code = readme_example()
    expected = re.search(r"# (\{.*\} \d+)\n", code).group(1)
    script = tmp_path / "example.py"
    # The start method is the only change: set it before anything starts.
    script.write_text(
        code.replace(
            'if __name__ == "__main__":',
            f'if __name__ == "__main__":\n    import multiprocessing as _mp; _mp.set_start_method("{method}")',
            1,
        )
    )
    out = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == expected
