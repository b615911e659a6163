"""Test configuration: hypothesis profiles and shared helpers.

`HYPOTHESIS_PROFILE=ci` (default) keeps the run inside the CI budget; `HYPOTHESIS_PROFILE=dev`
draws many more examples. Nothing here imports `interpolant_rl`: the package is first imported by
the test modules at collection, after pytest's jaxtyping import hook (`--jaxtyping-packages`, see
pyproject.toml) is installed, so every annotated function is checked at run time.
"""

import gc
import os

import pytest
from hypothesis import HealthCheck, settings


settings.register_profile(
    "ci",
    max_examples=6,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
)
settings.register_profile(
    "dev",
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_programs():
    """Drop every compiled XLA program after each test module.

    Each CPU executable keeps a handful of memory mappings for its JIT-compiled code, and jit caches
    keep executables alive for the life of the process. The whole suite compiles thousands of
    programs, which in one process exceeded Linux's default `vm.max_map_count` (65530) and made
    XLA segfault inside `backend_compile`. Modules still share compiled functions between their
    own tests; nothing is shared across modules.
    """
    yield
    import jax  # imported late: the jaxtyping import hook must be installed before the package

    jax.clear_caches()
    gc.collect()
