"""The digits example trains to its promised accuracy (fixed seeds, 20% held out).

(That fit compiles one step per batch shape is tested in test_models.py.)"""
import importlib.util
import os

import numpy as np
import pytest

pytest.importorskip("sklearn")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_example():
    path = os.path.join(ROOT, "examples", "digits.py")
    spec = importlib.util.spec_from_file_location("digits_example", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


digits = load_example()


@pytest.mark.parametrize("name", ["mlp", "cnn"])
def test_digits_reaches_97_percent_test_accuracy(name):
    result = digits.train(name)
    assert result["accuracy"] >= 0.97, result


def test_example_step_is_inspectable_by_the_cli_convention():
    args = digits.example_args()
    params, opt_state, _, loss, sums = digits.train_step(*args)
    assert np.isfinite(loss) and 0 <= sums["accuracy"] <= digits.BATCH_SIZE
    assert set(params) == set(args[0]) and int(opt_state["step"]) == 1
