"""Shared pytest set-up: checks on, CUDA simulated, reproducible hypothesis profiles.

The environment variables must be set before anything imports numba or graphjit, which is why they
sit at the top of conftest (pytest imports it before any test module).
"""
import os

os.environ.setdefault("GRAPHJIT_VERIFY", "1")  # run the IR verifier after every pass
os.environ.setdefault("NUMBA_ENABLE_CUDASIM", "1")  # CUDA tests run in Numba's simulator
# the disk cache is on by default: keep the suite's object code out of the user's ~/.cache
os.environ.setdefault("GRAPHJIT_CACHE_DIR", __import__("tempfile").mkdtemp(prefix="gj-test-cache-"))
# no background linking of every test program into a shared object (a C compiler run each):
# tests/test_shared_objects.py turns it on where it is the subject
os.environ.setdefault("GRAPHJIT_SHARED_OBJECTS", "0")

from hypothesis import HealthCheck, settings  # noqa: E402

settings.register_profile(
    "ci", deadline=None, max_examples=25, derandomize=True, database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "dev", deadline=None, max_examples=10, derandomize=True, database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "thorough", deadline=None, max_examples=300,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
