r"""The GPU suite's training run: QAM at the paper configuration on OGBench cube-double task 2 for
100k offline updates (or as many as a time limit allows), its success rate at the end, and how
busy the training loop keeps the device.

    python benchmarks/gpu_run.py generate --data-dir D --episodes 300 --workers 14 --out F.json
    python benchmarks/gpu_run.py train --data-dir D --episodes 300 --run-dir R --time-limit 240 --out F.json
    python benchmarks/gpu_run.py ... --dry-run      # tiny sizes on CPU: proves the path, measures nothing

`generate` builds the dataset with OGBench's oracles (`interpolant_rl.data.load_ogbench`, every
worker a process on its own core; JAX is kept off the GPU there). `benchmarks/gpu_suite.sh` starts
it in the background at the suite's start, so the CPU cores generate while the GPU benchmarks
run; `train` waits for it on the dataset's lock.

`train` runs `experiments/run.py` (the main job, unchanged) with `--preset paper` (4 x 512
networks, K = 10 critics, batch 256, Table 4's cube-double values), `--offline-steps 100000
--online-steps 0`, one evaluation at the end (`--eval-episodes 50`), `--updates-per-call 1000`
and `--time-limit`: the run stops at the first call boundary after that many seconds of training
and is evaluated there, so the suite's budget holds; `steps` says how far it got.

Device busy-ness, two readings:

- `loop_idle_fraction`: from the run's `train.jsonl`, whose offline rows time each jitted call
  (`call_time_s`: dispatch to metrics on the host) and the host's work before it
  (`host_time_s`: logging, the metrics' copy and checks, the next dispatch; evaluations
  excluded): $\sum \text{host} / \sum (\text{host} + \text{call})$, the first call (the
  compile) left out. This is the time the training loop itself leaves the device without work.
- `gpu_utilization`: `nvidia-smi`'s `utilization.gpu` (the share of each sample period in which a
  kernel ran) sampled every 200 ms while the offline rows are being written;
  `device_idle_fraction` $= 1 - $ its mean. This also counts the gaps *between* kernels inside
  a call (launch latency of many small kernels), which the loop's reading cannot see. `null`
  without `nvidia-smi`.

One JSON object is written to `--out` (and printed).
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path


ROOT = Path(__file__).resolve().parent.parent
ENV = "cube-double-play-singletask-task2-v0"
STEPS = 100_000
EVAL_EPISODES = 50
UPDATES_PER_CALL = 1000
# --dry-run: the same path at sizes that finish in seconds on a CPU
DRY = dict(
    steps=40,
    eval_episodes=1,
    updates_per_call=20,
    sizes=["--width", "32", "--depth", "1", "--num-critics", "2"],
)


def generate(options) -> dict:
    os.environ["JAX_PLATFORMS"] = "cpu"  # the oracles' processes never touch the GPU
    from interpolant_rl import data

    start = time.perf_counter()
    data.load_ogbench(
        ENV, options.data_dir, num_episodes=options.episodes, seed=0, workers=options.workers
    )
    return dict(
        env=ENV,
        episodes=options.episodes,
        workers=options.workers,
        seconds=round(time.perf_counter() - start, 2),
    )


class UtilisationSampler:
    """`nvidia-smi` sampling `utilization.gpu` every 200 ms into a CSV, if it is installed."""

    def __init__(self, path: Path):
        self.path, self.process = path, None
        if shutil.which("nvidia-smi") is not None:
            self.file = open(path, "w")
            self.process = subprocess.Popen(
                [
                    "nvidia-smi",
                    "--query-gpu=timestamp,utilization.gpu,memory.used",
                    "--format=csv,noheader,nounits",
                    "-lms",
                    "200",
                ],
                stdout=self.file,
                stderr=subprocess.DEVNULL,
            )

    def stop(self) -> list[tuple[float, float, float]]:
        """The samples `(unix time, utilisation %, memory MiB)`."""
        if self.process is None:
            return []
        self.process.terminate()
        self.process.wait()
        self.file.close()
        samples = []
        for line in self.path.read_text().splitlines():
            try:
                stamp, utilisation, memory = (part.strip() for part in line.split(","))
                when = datetime.strptime(stamp, "%Y/%m/%d %H:%M:%S.%f").timestamp()
                samples.append((when, float(utilisation), float(memory)))
            except ValueError:  # a partial last line, or "[N/A]"
                continue
        return samples


def _rows(path: Path) -> list[dict]:
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:  # a line being written
            break
    return rows


def train(options) -> dict:
    steps = DRY["steps"] if options.dry_run else STEPS
    episodes_eval = DRY["eval_episodes"] if options.dry_run else EVAL_EPISODES
    per_call = DRY["updates_per_call"] if options.dry_run else UPDATES_PER_CALL
    command = [
        sys.executable,
        str(ROOT / "experiments" / "run.py"),
        "--agent",
        "qam",
        "--env",
        ENV,
        "--preset",
        "paper",
        "--offline-steps",
        str(steps),
        "--online-steps",
        "0",
        "--dataset-episodes",
        str(options.episodes),
        "--workers",
        str(options.workers),
        "--eval-interval",
        str(steps),
        "--eval-episodes",
        str(episodes_eval),
        "--updates-per-call",
        str(per_call),
        "--time-limit",
        str(options.time_limit),
        "--data-dir",
        str(options.data_dir),
        "--out-dir",
        str(options.run_dir),
        "--overwrite",
        *(DRY["sizes"] if options.dry_run else []),
    ]
    print("[gpu_run] " + " ".join(command[1:]), file=sys.stderr, flush=True)
    train_log = options.run_dir / "train.jsonl"
    sampler = UtilisationSampler(options.run_dir.parent / "nvidia_smi.csv")
    start = time.time()
    seen, window = 0, []  # (unix time, rows written) while the run is training
    process = subprocess.Popen(command, cwd=ROOT)
    while process.poll() is None:
        time.sleep(0.2)
        count = len(_rows(train_log))
        if count != seen:
            window.append((time.time(), count))
            seen = count
    wall = time.time() - start
    samples = sampler.stop()
    result = dict(
        env=ENV,
        agent="qam",
        preset="dry-run" if options.dry_run else "paper",
        target_steps=steps,
        time_limit_s=options.time_limit,
        updates_per_call=per_call,
        eval_episodes=episodes_eval,
        dataset_episodes=options.episodes,
        exit_code=process.returncode,
        wall_s=round(wall, 2),
    )
    summary_path = options.run_dir / "summary.json"
    if process.returncode != 0 or not summary_path.exists():
        return dict(result, status="error")
    summary = json.loads(summary_path.read_text())
    rows = [row for row in _rows(train_log) if "call_time_s" in row]
    timed = rows[1:]  # the first call compiles
    calls = sum(row["call_time_s"] for row in timed)
    hosts = sum(row["host_time_s"] for row in timed)
    done = summary["steps"]
    timed_updates = done - (rows[0]["step"] if rows else 0)
    result.update(
        status="ok",
        steps=done,
        completed=not summary["time_limit_reached"],
        success=summary["final"].get("success"),
        eval_time_s=summary["final"].get("eval_time_s"),
        first_call_s=round(rows[0]["call_time_s"], 3) if rows else None,
        ms_per_update_in_loop=round(1e3 * (calls + hosts) / timed_updates, 4)
        if timed and timed_updates
        else None,
        loop_idle_fraction=round(hosts / (calls + hosts), 5) if timed else None,
    )
    if samples and len(window) >= 2:
        # from the first row (the compile is over) to the last (evaluation starts after it)
        begin, end = window[0][0], window[-1][0]
        inside = [u for when, u, _ in samples if begin <= when <= end]
        if inside:
            mean = sum(inside) / len(inside)
            result.update(
                gpu_utilization=dict(
                    mean_percent=round(mean, 2),
                    samples=len(inside),
                    window_s=round(end - begin, 2),
                    peak_memory_mib=max(m for _, _, m in samples),
                ),
                device_idle_fraction=round(1 - mean / 100, 4),
            )
    else:
        result.update(
            gpu_utilization=None,
            device_idle_fraction=None,
            device_idle_note="nvidia-smi not found or too short a run: no utilisation samples",
        )
    if not result["completed"] and result["ms_per_update_in_loop"]:
        result["projected_s_for_target_steps"] = round(
            steps * result["ms_per_update_in_loop"] / 1e3, 1
        )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("stage", choices=["generate", "train"])
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--episodes", type=int, default=300, help="dataset episodes")
    parser.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) - 2))
    parser.add_argument("--run-dir", type=Path, default=None)
    parser.add_argument("--time-limit", type=float, default=240.0, help="seconds of training")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--dry-run", action="store_true")
    options = parser.parse_args()
    if options.episodes < 1 or options.workers < 1 or not options.time_limit > 0:
        parser.error("--episodes and --workers must be >= 1, --time-limit > 0")
    if options.stage == "train":
        if options.run_dir is None:
            parser.error("train needs --run-dir")
        options.run_dir.mkdir(parents=True, exist_ok=True)
        result = train(options)
    else:
        result = generate(options)
    result = dict(stage=options.stage, dry_run=options.dry_run, **result)
    text = json.dumps(result, indent=2)
    options.out.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
