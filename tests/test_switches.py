"""Settings and debug switches: a bad value warns (naming the variable) and a switch that cannot
do its job warns once; neither ever fails a call."""
from __future__ import annotations

import importlib
import os
import warnings

import numpy as np
import pytest

import graphjit as gj
from graphjit.runtime.cpu import threads

jit_module = importlib.import_module("graphjit.jit")   # the module, not the `gj.jit` function

X = np.linspace(-1, 1, 12).reshape(3, 4)


def _fresh(offset: float):
    """A new function each time (a new compile, so settings are read again)."""
    return gj.jit(lambda x: np.tanh(x) + offset)


def _messages(caught) -> list[str]:
    return [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]


@pytest.mark.parametrize("value", ["abc", "2.5", "four"])
def test_a_bad_thread_count_warns_once_and_uses_the_cores(monkeypatch, value):
    monkeypatch.setenv("GRAPHJIT_NUM_THREADS", value)
    monkeypatch.setattr(threads, "_warned_settings", set())
    with pytest.warns(RuntimeWarning, match=f"GRAPHJIT_NUM_THREADS='{value}'"):
        assert threads.num_threads() >= 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert threads.num_threads() >= 1


def test_a_good_thread_count_is_used(monkeypatch):
    monkeypatch.setenv("GRAPHJIT_NUM_THREADS", "3")
    assert threads.num_threads() == 3
    monkeypatch.setenv("GRAPHJIT_NUM_THREADS", "0")      # no worker threads
    assert threads.num_threads() == 1


def _cache_dir_cases(tmp_path):
    a_file = tmp_path / "a-file"
    a_file.write_text("not a directory")
    dangling = tmp_path / "dangling"
    dangling.symlink_to(tmp_path / "nowhere")
    return {"a file": (a_file, "is a file"), "a dangling link": (dangling, "dangling"),
            "under a file": (a_file / "sub", "cannot be created")}


@pytest.mark.parametrize("case", ["a file", "a dangling link", "under a file"])
def test_a_cache_dir_that_cannot_hold_the_cache_warns_once(monkeypatch, tmp_path, case):
    directory, reason = _cache_dir_cases(tmp_path)[case]
    monkeypatch.setenv("GRAPHJIT_CACHE_DIR", str(directory))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for offset in (1.0, 2.0, 3.0):
            np.testing.assert_allclose(_fresh(offset)(X), np.tanh(X) + offset)
    messages = [m for m in _messages(caught) if "GRAPHJIT_CACHE_DIR" in m]
    assert len(messages) == 1 and reason in messages[0] and str(directory) in messages[0]
    assert not os.path.isdir(directory)


def test_an_uncreatable_dump_dir_warns_once_and_never_fails(monkeypatch, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("GRAPHJIT_DUMP", str(blocker / "dumps"))
    monkeypatch.setattr(jit_module, "_dump_warnings", set())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for offset in (1.0, 2.0):
            np.testing.assert_allclose(_fresh(offset)(X), np.tanh(X) + offset)
    messages = [m for m in _messages(caught) if "GRAPHJIT_DUMP" in m]
    assert len(messages) == 1 and "cannot write" in messages[0]


def test_a_writable_dump_dir_still_gets_every_stage(monkeypatch, tmp_path):
    monkeypatch.setenv("GRAPHJIT_DUMP", str(tmp_path / "dumps"))
    _fresh(4.0)(X)
    assert any(name.endswith(".txt") for name in os.listdir(tmp_path / "dumps"))
