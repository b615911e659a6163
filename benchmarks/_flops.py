r"""Matrix-multiply FLOPs of a JAX function, counted on its jaxpr with loop trip counts.

Why not XLA's own count: `compiled.cost_analysis()["flops"]` (and `Lowered.cost_analysis()`)
runs XLA's `HloCostAnalysis`, which visits the body of a `while` loop once, whatever its trip
count. A `lax.scan` lowers to a `while` loop, so a scan of 10 matmuls is reported as the FLOPs
of one. Our updates scan over flow steps (sampling, adjoints), so XLA's number undercounts them.

What is counted here: every `dot_general` as $2\cdot\prod(\text{batch})\cdot\prod(\text{lhs
free})\cdot\prod(\text{rhs free})\cdot\prod(\text{contracting})$ FLOPs (one multiply and one add
per term, the usual $2MNK$; an outer product counts $2MN$), read from its operand shapes and
dimension numbers, recursing into sub-jaxprs:

- `scan`: the body times `length`;
- `cond`: the most expensive branch (an upper bound for what runs);
- `while`: the body and condition once, and the loop is *flagged*: its trip count is unknown,
  so the total is a lower bound (`FlopCount.bounded` is `False`);
- `jit`/`pjit`, `closed_call`, `core_call`, `remat`/`checkpoint`, `custom_jvp_call`,
  `custom_vjp_call`: their called jaxpr once (under differentiation JAX has already inlined the
  custom rules' forward and backward passes);
- any other primitive carrying jaxprs: each of them once, and its name is recorded in
  `FlopCount.other_higher_order` so the count can be checked by hand;
- `conv_general_dilated` and `ragged_dot` are not counted and are recorded in `uncounted`.

Elementwise work (activations, LayerNorm, optimiser updates) is not counted: for MLPs of width
512 it is a few percent of the matmul FLOPs, and dense matmul throughput is the reference the
benchmarks compare against.

    count = count_matmul_flops(jax.grad(loss), params, batch)
    count.flops, count.bounded
"""

import dataclasses
import math
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import equinox as eqx
import jax
from jax.extend import core


CALLS = frozenset(
    {
        "jit",
        "pjit",
        "closed_call",
        "core_call",
        "remat",
        "checkpoint",
        "custom_jvp_call",
        "custom_vjp_call",
        "custom_vjp_call_jaxpr",
    }
)
UNCOUNTED = frozenset({"conv_general_dilated", "ragged_dot", "ragged_dot_general"})


@dataclasses.dataclass
class FlopCount:
    """The result of a count.

    **Fields:**

    - `flops`: matmul FLOPs (`dot_general` only), loop trip counts included.
    - `dot_generals`: how many `dot_general`s execute (trip counts included).
    - `while_loops`: `while` primitives met; each body was counted once (trip count unknown).
    - `other_higher_order`: other primitives with sub-jaxprs (each sub-jaxpr counted once).
    - `uncounted`: matmul-like primitives that were not counted (convolutions, ragged dots).
    """

    flops: int = 0
    dot_generals: int = 0
    while_loops: int = 0
    other_higher_order: Counter = dataclasses.field(default_factory=Counter)
    uncounted: Counter = dataclasses.field(default_factory=Counter)

    @property
    def bounded(self) -> bool:
        """`False` when a `while` loop made `flops` a lower bound."""
        return self.while_loops == 0

    def add(self, other: "FlopCount", times: int = 1) -> None:
        self.flops += times * other.flops
        self.dot_generals += times * other.dot_generals
        self.while_loops += other.while_loops
        self.other_higher_order.update(other.other_higher_order)
        self.uncounted.update(other.uncounted)

    def as_dict(self) -> dict:
        return {
            "flops": self.flops,
            "dot_generals": self.dot_generals,
            "while_loops": self.while_loops,
            "bounded": self.bounded,
            "other_higher_order": dict(self.other_higher_order),
            "uncounted": dict(self.uncounted),
        }


def dot_general_flops(lhs_shape, rhs_shape, dimension_numbers) -> int:
    """$2\\cdot$(number of multiply-adds) of one `dot_general`."""
    (lhs_contract, rhs_contract), (lhs_batch, rhs_batch) = dimension_numbers
    del lhs_batch, lhs_contract
    rhs_free = [
        size
        for axis, size in enumerate(rhs_shape)
        if axis not in rhs_contract and axis not in rhs_batch
    ]
    # every lhs element meets every free rhs column once: lhs = batch x free x contracting
    return 2 * math.prod(lhs_shape) * math.prod(rhs_free)


def _sub_jaxprs(params: dict[str, Any]) -> Iterator[core.Jaxpr]:
    for value in params.values():
        values = value if isinstance(value, tuple | list) else (value,)
        for item in values:
            if isinstance(item, core.ClosedJaxpr):
                yield item.jaxpr
            elif isinstance(item, core.Jaxpr):
                yield item


def _open(jaxpr) -> core.Jaxpr:
    return jaxpr.jaxpr if isinstance(jaxpr, core.ClosedJaxpr) else jaxpr


def jaxpr_flops(jaxpr: core.Jaxpr | core.ClosedJaxpr) -> FlopCount:
    """Count the matmul FLOPs of a jaxpr (see the module docstring for the rules)."""
    count = FlopCount()
    for eqn in _open(jaxpr).eqns:
        name = eqn.primitive.name
        params = eqn.params
        if name == "dot_general":
            lhs, rhs = (var.aval.shape for var in eqn.invars)
            count.flops += dot_general_flops(lhs, rhs, params["dimension_numbers"])
            count.dot_generals += 1
        elif name == "scan":
            count.add(jaxpr_flops(params["jaxpr"]), times=params["length"])
        elif name == "cond":
            branches = [jaxpr_flops(branch) for branch in params["branches"]]
            count.add(max(branches, key=lambda branch: branch.flops))
        elif name == "while":
            count.while_loops += 1
            count.add(jaxpr_flops(params["cond_jaxpr"]))
            count.add(jaxpr_flops(params["body_jaxpr"]))
        elif name in UNCOUNTED:
            count.uncounted[name] += 1
        else:
            subs = list(_sub_jaxprs(params))
            if subs and name not in CALLS:
                count.other_higher_order[name] += 1
            for sub in subs:
                count.add(jaxpr_flops(sub))
    return count


def count_matmul_flops(fn: Callable, *args: Any, **kwargs: Any) -> FlopCount:
    """Trace `fn(*args, **kwargs)` with `jax.make_jaxpr` (nothing is compiled or run) and
    count its matmul FLOPs. Array leaves of the arguments are traced; every other leaf
    (activation functions, static fields of Equinox modules, Python numbers) is held fixed."""
    arrays, static = eqx.partition((args, kwargs), eqx.is_array)

    def traced(arrays):
        args, kwargs = eqx.combine(arrays, static)
        return fn(*args, **kwargs)

    return jaxpr_flops(jax.make_jaxpr(traced)(arrays))
