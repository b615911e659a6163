"""Test configuration: hypothesis profiles and shared helpers.

`HYPOTHESIS_PROFILE=ci` (default) keeps the run inside the CI budget; `HYPOTHESIS_PROFILE=dev`
draws many more examples. Nothing here imports `interpolant_rl`: the package is first imported by
the test modules at collection, after pytest's jaxtyping import hook (`--jaxtyping-packages`, see
pyproject.toml) is installed, so every annotated function is checked at run time.
"""

import os

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
