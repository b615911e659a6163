"""MuJoCo environments on a headless machine, without console noise.

Two third-party notices are known to be harmless here and filled every console: GLFW's "X11: The
DISPLAY environment variable is missing" (gymnasium's MuJoCo renderer imports GLFW, which looks
for a display although nothing is rendered) from every process that makes an environment, and
gymnasium's "Box low's/high's precision lowered by casting to float32" for OGBench's float64
bounds (the observations are float32 either way).
"""

import os
import warnings


_BOX_PRECISION = r".*Box (low|high)'s precision lowered by casting to float32"


def use_headless_rendering() -> None:
    """Choose MuJoCo's headless OpenGL backend (EGL) when no display is available and the user
    chose none: sets `MUJOCO_GL=egl` (and `PYOPENGL_PLATFORM=egl`) only if `MUJOCO_GL` is unset
    and neither `DISPLAY` nor `WAYLAND_DISPLAY` is. An explicit `MUJOCO_GL` always wins. Called
    when this module is imported (by `interpolant_rl.data` and `interpolant_rl.train`, before
    any environment is made), so worker processes inherit it."""
    if (
        os.environ.get("MUJOCO_GL")
        or os.environ.get("DISPLAY")
        or os.environ.get("WAYLAND_DISPLAY")
    ):
        return
    os.environ["MUJOCO_GL"] = "egl"
    os.environ.setdefault("PYOPENGL_PLATFORM", "egl")


def silence_known_notices() -> None:
    """Ignore gymnasium's float32 precision notice about `Box` bounds (only that message): OGBench
    builds its action space anew on every `reset`, so the notice would come from every process
    that steps an environment. Installed when this module is imported."""
    warnings.filterwarnings("ignore", message=_BOX_PRECISION, category=UserWarning)


use_headless_rendering()  # before anything imports MuJoCo's renderer
silence_known_notices()
