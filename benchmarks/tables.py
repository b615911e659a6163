"""Markdown tables from the performance benchmarks' JSON, for the documentation.

    python benchmarks/train_step.py > benchmarks/results/train_step.json
    python benchmarks/action_latency.py > benchmarks/results/action_latency.json
    python benchmarks/multi_seed.py > benchmarks/results/multi_seed.json
    python benchmarks/sde_overhead.py > benchmarks/results/sde_overhead.json
    python benchmarks/tables.py            # writes benchmarks/results/{name}.md for each JSON present

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
    configs = sorted({r["config"] for r in report["results"]}, key=["paper", "small"].index)

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


TABLES = {
    "sde_overhead": sde_overhead_table,
    "train_step": train_step_table,
    "action_latency": action_latency_table,
    "multi_seed": multi_seed_table,
}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
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
