"""Evaluation videos: frames rendered by the evaluation environments, written as MP4.

MuJoCo renders without a display through its EGL backend (`MUJOCO_GL=egl`, which the library
selects on a machine without one; Mesa's `libEGL` suffices, a GPU is not needed) and OGBench's
and gymnasium's MuJoCo environments render `rgb_array` frames through it. Encoding uses PyAV
(the optional extra `pip install "interpolant_rl[video]"`), whose wheels carry FFmpeg.
"""

from pathlib import Path

import numpy as np
from jaxtyping import UInt8


def _av_module():
    try:
        import av
    except ImportError:
        raise ImportError(
            'evaluation videos need PyAV: pip install "interpolant_rl[video]"'
        ) from None
    return av


def check_video_support() -> None:
    """Raise `ImportError` naming the extra when videos cannot be written here."""
    _av_module()


def write_mp4(
    path: str | Path, frames: UInt8[np.ndarray, "time height width 3"], fps: float | int
) -> None:
    """Write `frames` (RGB, `uint8`) to the H.264 MP4 `path` at `fps` frames per second (the
    frames are padded to even sizes, as the YUV 4:2:0 pixel format needs). The file is written
    under a temporary name and renamed, so a reader never sees half a video."""
    av = _av_module()
    frames = np.asarray(frames, np.uint8)
    height, width = frames.shape[1] + frames.shape[1] % 2, frames.shape[2] + frames.shape[2] % 2
    pad = ((0, 0), (0, height - frames.shape[1]), (0, width - frames.shape[2]), (0, 0))
    frames = np.pad(frames, pad)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    with av.open(str(partial), "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=int(round(fps)))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    partial.replace(path)


def read_mp4(path: str | Path) -> UInt8[np.ndarray, "time height width 3"]:
    """The frames of an MP4 written by `write_mp4` (RGB, `uint8`)."""
    av = _av_module()
    with av.open(str(path)) as container:
        return np.stack([frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)])
