#!/usr/bin/env bash
# Wheels for running the GPU suite on a machine that cannot reach a package index but already
# has JAX with CUDA (and Equinox, Diffrax, Optax, NumPy, SciPy, ...), as GPU images usually do.
#
#   bash benchmarks/gpu_wheelhouse.sh DIR [PYTHON_VERSION]     # here, with an index (default 3.12)
#   bash benchmarks/gpu_suite.sh --wheelhouse DIR              # there
#
# Downloads, without their dependencies, the project's own dependencies that such images lack
# (OGBench and what it needs: MuJoCo, dm_control, gymnasium; tyro; beartype) and the build
# backend of `pip install -e .` (hatchling and its needs), as binary wheels for x86-64 Linux and
# the given CPython version. `pip install --no-index --find-links DIR -e .` then resolves every
# other requirement from what the machine has installed.
set -euo pipefail

DIR=${1:?usage: gpu_wheelhouse.sh DIR [PYTHON_VERSION]}
VERSION=${2:-3.12}
PY=${PYTHON:-python3}
PACKAGES=(
    ogbench mujoco mujoco-core mujoco-studio dm_control dm-env dm-tree labmaze glfw pyopengl
    gymnasium farama-notifications tyro docstring-parser typeguard shtab beartype
    websockets hatchling editables pathspec pluggy trove-classifiers packaging tomlkit
)
PLATFORMS=()
for n in 17 24 27 28 31 34 35; do PLATFORMS+=(--platform "manylinux_2_${n}_x86_64"); done
PLATFORMS+=(--platform manylinux2014_x86_64 --platform linux_x86_64 --platform any)
mkdir -p "$DIR"
for package in "${PACKAGES[@]}"; do
    "$PY" -m pip download -q --no-deps --only-binary=:all: --implementation cp \
        --python-version "$VERSION" "${PLATFORMS[@]}" -d "$DIR" "$package"
done
# dm_control's wheel is 56 MB, almost all of it models OGBench never loads (the soccer and
# walker bodies of its locomotion suite, the dog, test assets): without them the wheelhouse fits
# a 64 MB transfer. OGBench uses dm_control's `mjcf` only.
"$PY" - "$DIR" <<'EOF_PY'
import base64, hashlib, pathlib, sys, zipfile

UNUSED = (
    "dm_control/locomotion/soccer/",
    "dm_control/locomotion/walkers/",
    "dm_control/suite/dog_assets/",
    "dm_control/mujoco/testing/",
    "dm_control/blender/",
    "dm_control/mjcf/test_assets/",
)
(wheel,) = pathlib.Path(sys.argv[1]).glob("dm_control-*.whl")
slim = wheel.with_suffix(".slim")
with zipfile.ZipFile(wheel) as source, zipfile.ZipFile(slim, "w", zipfile.ZIP_DEFLATED) as target:
    kept = [i for i in source.infolist() if not i.filename.startswith(UNUSED)]
    record = next(i.filename for i in kept if i.filename.endswith(".dist-info/RECORD"))
    lines = []
    for info in kept:
        if info.filename == record:
            continue
        data = source.read(info)
        target.writestr(info, data)
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        lines.append(f"{info.filename},sha256={digest},{len(data)}")
    lines.append(f"{record},,")
    target.writestr(record, "\n".join(lines) + "\n")
slim.replace(wheel)
print(f"{wheel.name}: kept {len(kept)} files")
EOF_PY
du -sh "$DIR"
