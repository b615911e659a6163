"""Markdown tables from the performance benchmarks' JSON, for the documentation.

    python benchmarks/train_step.py > benchmarks/results/train_step.json
    python benchmarks/action_latency.py > benchmarks/results/action_latency.json
    python benchmarks/multi_seed.py > benchmarks/results/multi_seed.json
    python benchmarks/sde_overhead.py > benchmarks/results/sde_overhead.json
    python benchmarks/tables.py            # writes benchmarks/results/{name}.md for each JSON present
    python benchmarks/tables.py --gpu benchmarks/results/gpu   # the GPU suite's summary.md

`docs/benchmarks.md` includes both the tables and the raw JSON (pymdownx.snippets), so the site
always shows what the committed result files say.
"""

import argparse
import json
import sys
from pathlib import Path


RESULTS = Path(__file__).resolve().parent / "results"


def _machine(report: dict) -> str:
    device = report["device"]
    versions = report["versions"]
    return (
        f"Machine: {device['platform']} ({device['processor']}), {report['cpu_count']} CPUs, "
        f"JAX {versions['jax']}, {report['mode']} mode."
    )


def _row(cells) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def _agent_grid(report: dict, configs: list[str], columns: list[str], cells) -> list[str]:
    """One row per agent, `columns` per configuration filled by `cells(result)`, "error" where
    the benchmark failed."""
    by_agent: dict[str, dict[str, dict]] = {}
    for result in report["results"]:
        by_agent.setdefault(result["agent"], {})[result["config"]] = result
    header = ["agent"] + [f"{config} {column}" for config in configs for column in columns]
    lines = [_row(header), _row(["---"] * len(header))]
    for agent, results in by_agent.items():
        row = [agent]
        for config in configs:
            result = results.get(config, {})
            ok = result.get("status") == "ok"
            row += cells(result) if ok else ["error"] + [""] * (len(columns) - 1)
        lines.append(_row(row))
    return lines


def _verdicts(report: dict, value) -> str:
    return ", ".join(
        f"{agent} {value(outcome['value'])} ({'meets' if outcome['meets'] else 'misses'})"
        for target in report["targets"]
        for agent, outcome in target["results"].items()
    )


def train_step_table(report: dict) -> str:
    peak = report["matmul_peak"]
    configs = list(report["config"]["sizes"])

    def cells(r):
        compile_s = r["compile_s"]["lower"] + r["compile_s"]["compile"]
        return [
            f"{r['ms_per_update']:.2f}",
            f"{r['matmul_gflop_per_update']:.2f}",
            f"{100 * r['fraction_of_matmul_peak']:.0f}",
            f"{compile_s:.1f}",
        ]

    columns = ["ms/update", "GFLOP/update", "% of peak", "compile s"]
    return "\n".join(
        [
            _machine(report) + f" Measured dense-matmul peak: {peak['gflops']:.1f} GFLOP/s "
            f"(float32 {peak['size']}x{peak['size']}). Target at `paper` size: "
            + _verdicts(report, lambda v: f"{100 * v:.0f} %")
            + f" of the peak (≥ {100 * report['targets'][0]['min']:.0f} %).",
            "",
            *_agent_grid(report, configs, columns, cells),
        ]
    )


def action_latency_table(report: dict) -> str:
    configs = sorted({r["config"] for r in report["results"]}, key=["paper", "small", "tiny"].index)

    def cells(r):
        by_variant = r["actions_per_s_by_variant"]
        return [f"{by_variant[v]:,.0f}" for v in ("act", "rollout", "compiled")]

    return "\n".join(
        [
            _machine(report)
            + f" One core: CPU affinity {report['single_core']['cpu_affinity']}. Target (paper size, "
            "one-step policies, > 5,000/s): " + _verdicts(report, lambda v: f"{v:,.0f}/s") + ".",
            "",
            *_agent_grid(report, configs, ["act/s", "rollout/s", "compiled/s"], cells),
        ]
    )


def multi_seed_table(report: dict) -> str:
    header = [
        "agent",
        "seeds N",
        "vmapped updates/s",
        "sequential updates/s",
        "speed-up",
        "compile s (vmapped / sequential)",
    ]
    lines = [_row(header), _row(["---"] * len(header))]
    for r in report["results"]:
        v, s = r["vmapped"], r["sequential"]
        lines.append(
            _row(
                [
                    r["agent"],
                    r["num_seeds"],
                    f"{v['updates_per_s']:.1f}",
                    f"{s['updates_per_s']:.1f}",
                    f"×{r['speedup']:.2f}",
                    f"{sum(v['compile_s'].values()):.1f} / {sum(s['compile_s'].values()):.1f}",
                ]
            )
        )
    return "\n".join([_machine(report), "", *lines])


def sde_overhead_table(report: dict) -> str:
    header = [
        "case",
        "library ms",
        "scan ms",
        "diffeqsolve ms",
        "library / scan",
        "diffeqsolve / scan",
        "compile s (library / scan / diffeqsolve)",
    ]
    lines = [_row(header), _row(["---"] * len(header))]
    implementations = ("library", "scan", "diffeqsolve")
    for case in report["cases"]:
        ms, compile_s = case["ms_per_call"], case["compile_s"]
        lines.append(
            _row(
                [
                    f"`{case['name']}`",
                    *(f"{ms[i]:.4g}" for i in implementations),
                    f"**{case['ratio_library_over_scan']:.3f}**",
                    f"{case['ratio_diffeqsolve_over_scan']:.3f}",
                    " / ".join(f"{compile_s[i]:.2f}" for i in implementations),
                ]
            )
        )
    verdict = "within" if report["all_meet_target"] else "NOT within"
    return "\n".join(
        [
            f"Machine: {report['device']['platform']} ({report['device']['processor']}), "
            f"{report['cpu_count']} CPUs, JAX {report['versions']['jax']}, Diffrax "
            f"{report['versions']['diffrax']}, {report['mode']} mode. Every library / scan ratio "
            f"is {verdict} the {report['target_ratio']} target.",
            "",
            *lines,
        ]
    )


NO_GPU_RUN = (
    "No GPU run of `benchmarks/gpu_suite.sh` is recorded here yet: the sessions that built the "
    "suite had no GPU machine. The suite is ready (`bash benchmarks/gpu_suite.sh` on a machine "
    "with an NVIDIA GPU; its `--dry-run` runs in CI on every change), and this section will show "
    "its files once a run has been committed."
)


def gpu_summary(directory: Path) -> str:
    """The GPU suite's results in `directory` (`suite.json` and the step files) as Markdown; a
    plain statement when no run is recorded there."""
    suite_path = directory / "suite.json"
    if not suite_path.exists():
        return NO_GPU_RUN
    suite = json.loads(suite_path.read_text())
    kind = (
        "dry run on CPU (tiny sizes: proves the path, measures nothing)"
        if suite["dry_run"]
        else "run"
    )
    lines = [
        f"GPU suite {kind}, {suite['date']}: {suite['gpu'] or suite['backend']}, JAX "
        f"{suite['jax']}, budget {suite['budget_s']} s ({suite['seconds_in_budget']} s used).",
        "",
        _row(["step", "status", "seconds", "note"]),
        _row(["---"] * 4),
        *(_row([s["step"], s["status"], s["seconds"], s["note"]]) for s in suite["steps"]),
    ]
    train_step = directory / "train_step.json"
    if train_step.exists():
        report = json.loads(train_step.read_text())
        peak = report["matmul_peak"]
        lines += [
            "",
            f"**train_step** (`{next(iter(report['config']['sizes']))}` size; dense-matmul peak "
            f"measured in the same process: {peak['gflops'] / 1e3:.1f} TFLOP/s, float32 "
            f"{peak['size']}x{peak['size']} at JAX's default precision):",
            "",
            _row(["agent", "ms/update", "achieved TFLOP/s", "% of peak", "compile s"]),
            _row(["---"] * 5),
        ]
        for r in report["results"]:
            if r["status"] != "ok":
                lines.append(_row([r["agent"], "error", "", "", ""]))
                continue
            lines.append(
                _row(
                    [
                        r["agent"],
                        f"{r['ms_per_update']:.3f}",
                        f"{r['achieved_gflops'] / 1e3:.2f}",
                        f"{100 * r['fraction_of_matmul_peak']:.1f}",
                        f"{r['compile_s']['lower'] + r['compile_s']['compile']:.1f}",
                    ]
                )
            )
    latency = directory / "action_latency.json"
    if latency.exists():
        lines += ["", "**action_latency** (one observation, one action chunk):", ""]
        lines += action_latency_table(json.loads(latency.read_text())).splitlines()[2:]
    multi = directory / "multi_seed.json"
    if multi.exists():
        lines += ["", "**multi_seed**:", ""]
        lines += multi_seed_table(json.loads(multi.read_text())).splitlines()[2:]
    run = directory / "training_run.json"
    if run.exists():
        r = json.loads(run.read_text())
        if r.get("status") == "ok":
            idle = r.get("device_idle_fraction")
            lines += [
                "",
                f"**training run**: QAM, {r['preset']} configuration, {r['env']}: "
                f"{r['steps']:,} of {r['target_steps']:,} updates"
                + ("" if r["completed"] else f" (time limit {r['time_limit_s']:.0f} s)")
                + f", success {r['success']:.2f} over {r['eval_episodes']} episodes at the end, "
                f"{r['ms_per_update_in_loop']:.3f} ms/update in the training loop; the loop "
                f"leaves the device idle {100 * r['loop_idle_fraction']:.2f} % of the time"
                + (
                    f", nvidia-smi's device idle fraction {100 * idle:.1f} %."
                    if idle is not None
                    else " (no nvidia-smi samples)."
                ),
            ]
        else:
            lines += ["", f"**training run**: failed (exit code {r.get('exit_code')})."]
    return "\n".join(lines)


TABLES = {
    "sde_overhead": sde_overhead_table,
    "train_step": train_step_table,
    "action_latency": action_latency_table,
    "multi_seed": multi_seed_table,
}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument(
        "--gpu",
        type=Path,
        default=None,
        metavar="DIR",
        help="only write DIR/summary.md from the GPU suite's files in DIR",
    )
    args = parser.parse_args(argv)
    if args.gpu is not None:
        try:
            text = gpu_summary(args.gpu)
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as error:
            print(f"tables.py: error: {args.gpu}: {type(error).__name__}: {error}", file=sys.stderr)
            return 2
        args.gpu.mkdir(parents=True, exist_ok=True)
        (args.gpu / "summary.md").write_text(text + "\n")
        print(f"wrote {args.gpu / 'summary.md'}")
        return 0
    written = 0
    for name, render in TABLES.items():
        source = args.results / f"{name}.json"
        if not source.exists():
            continue
        try:
            report = json.loads(source.read_text())
            table = render(report)
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as error:
            print(f"tables.py: error: {source}: {type(error).__name__}: {error}", file=sys.stderr)
            return 2
        (args.results / f"{name}.md").write_text(table + "\n")
        print(f"wrote {args.results / f'{name}.md'}")
        written += 1
    if not written:
        print(f"tables.py: error: no benchmark JSON in {args.results}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
