"""graphjit installed the way `pip install .` does (a copy in site-packages, not the editable
checkout): its own frames are still recognised, so nodes and errors name the user's line."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

USER_PROGRAM = textwrap.dedent("""
    import sys
    sys.path.insert(0, sys.argv[1])
    import numpy as np
    import graphjit as gj
    assert gj.__file__.startswith(sys.argv[1]), gj.__file__

    def loss(pred, target):
        return gj.losses.mean_squared_error(target, pred)          # line 9

    text = gj.jit(loss).lower(np.ones((4, 3), np.float32),
                              np.ones((4, 3), np.float32)).as_text("traced")
    sources = {line.rsplit("# ", 1)[1] for line in text.splitlines() if "# " in line}
    print(sorted(sources))

    def bad(x):
        return x @ np.ones((5, 2))                                 # line 17
    try:
        gj.jit(bad)(np.ones((3, 4)))
    except gj.GraphjitError as error:
        print(str(error).splitlines()[0])
""")


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> str:
    target = str(tmp_path_factory.mktemp("site"))
    # a clean copy of the sources, so no stale build/ of the checkout reaches the wheel
    source = str(tmp_path_factory.mktemp("source") / "graphjit")
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
        ".git", "build", "*.egg-info", "__pycache__", ".venv", ".hypothesis", "dump"))
    done = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", target, source],
        capture_output=True, text=True, timeout=300,
        env=dict(os.environ, PIP_NO_CACHE_DIR="1"))
    assert done.returncode == 0, f"`pip install --target` failed: {done.stderr[-2000:]}"
    return target


def test_installed_copy_names_the_users_lines(installed, tmp_path):
    script = tmp_path / "user_model.py"
    script.write_text(USER_PROGRAM)
    done = subprocess.run([sys.executable, str(script), installed], capture_output=True,
                          text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    sources, error = done.stdout.strip().splitlines()[-2:]
    assert sources == "['user_model.py:9']", sources
    assert "user_model.py:17" in error, error
