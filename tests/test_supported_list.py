"""The README's list of traced NumPy functions is the tracer's registry (graphjit functions),
and a function missing from it is refused with an error naming the user's line."""
from __future__ import annotations

import os
import re

import numpy as np
import pytest

import graphjit as gj
from graphjit.cli import supported_markdown
from graphjit.compiler.errors import UnsupportedError
from graphjit.frontend.numpy_api import supported_names

README = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")


def test_readme_lists_exactly_what_the_registry_holds():
    text = open(README).read()
    block = re.search(r"<!-- supported-functions:start -->\n(.*?)\n<!-- supported-functions:end",
                      text, re.S)
    assert block, "README.md lost its supported-functions block"
    assert block.group(1).strip() == supported_markdown().strip(), (
        "README.md's function list is stale: paste the output of `graphjit functions`")


def test_every_listed_name_is_numpy_api():
    for kind, names in supported_names().items():
        for name in names:
            if name.startswith("np."):
                target = np
                for part in name[3:].split("."):
                    target = getattr(target, part)
                assert callable(target), name
            elif name.startswith("."):
                assert hasattr(np.ndarray, name[1:]), name


@pytest.mark.parametrize("function", [np.roots, np.fft.fft, np.poly, np.gradient],
                         ids=lambda f: f.__name__)
def test_an_unlisted_function_is_refused_naming_the_users_line(function):
    listed = set(supported_names()["functions"])
    assert f"np.{function.__name__}" not in listed

    def uses_it(x):
        return function(x)

    with pytest.raises(UnsupportedError, match=r"^test_supported_list\.py:\d+: .*not supported"):
        gj.jit(uses_it)(np.linspace(0.0, 1.0, 8))
