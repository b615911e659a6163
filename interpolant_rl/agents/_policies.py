r"""Acting policies that are not flows: a network of noise, a deterministic network, and the
best of $N$ proposals under a critic (or a softmax draw among them)."""

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
from jaxtyping import Array, Float

from ..nn import MLP, TanhGaussianPolicy
from ._agent import AbstractPolicy


class NoisePolicy(AbstractPolicy):
    r"""$a = \operatorname{clip}(g(z, s), -1, 1)$, $z \sim \mathcal N(0, I)$: a one-step policy
    (FQL's [`OneStepPolicy`][interpolant_rl.nn.OneStepPolicy]), a MeanFlow jump from $t = 0$ to
    $1$, or a few MoMa jumps.

    **Fields:** `sampler` (a module or `jax.tree_util.Partial` `(z, s) -> action`), `action_dim`
    and `clip` (static).
    """

    sampler: Callable
    action_dim: int = eqx.field(static=True)
    clip: bool = eqx.field(static=True, default=True)

    def __call__(self, observations, key):
        noise = jr.normal(key, (observations.shape[0], self.action_dim))
        actions = jax.vmap(self.sampler)(noise, observations)
        return jnp.clip(actions, -1.0, 1.0) if self.clip else actions


class StochasticPolicy(AbstractPolicy):
    """$a \\sim \\pi(\\cdot \\mid s)$ of a [`TanhGaussianPolicy`][interpolant_rl.nn.TanhGaussianPolicy]
    (one key per row, as in training).

    **Fields:** `network`.
    """

    network: Callable

    def __call__(self, observations, key):
        keys = jr.split(key, observations.shape[0])
        return jax.vmap(self.network.sample_and_log_prob)(observations, keys)[0]


class DeterministicPolicy(AbstractPolicy):
    """$a = \\mu(s)$ (ReBRAC's actor, whose output is already in $[-1, 1]$); the key is unused.

    **Fields:** `network` (`s -> action`).
    """

    network: Callable

    def __call__(self, observations, key):
        del key
        return jax.vmap(self.network)(observations)


class BestOfN(AbstractPolicy):
    r"""$a = a_{j^*}$, $j^* = \arg\max_j \min_k Q_k(s, a_j)$ over $N$ actions $a_j$ of a
    `proposal` policy (IFQL's acting rule).

    **Fields:** `proposal` (a policy), `values` (`(observations, actions) -> (batch, K)`, e.g.
    [`AbstractCritic.value_function`][interpolant_rl.agents.AbstractCritic.value_function]),
    `num_samples` (static).
    """

    proposal: AbstractPolicy
    values: Callable
    num_samples: int = eqx.field(static=True)

    def candidates(self, observations, key):
        """The $N$ proposals per state, shape `(batch, num_samples, action_dim)`."""
        batch, n = observations.shape[0], self.num_samples
        actions = self.proposal(jnp.repeat(observations, n, axis=0), key)
        return actions.reshape(batch, n, actions.shape[-1])

    def __call__(self, observations, key):
        candidates = self.candidates(observations, key)
        batch, n, dim = candidates.shape
        values = self.values(  # Q_k(s, a_j), flattened over (state, candidate)
            jnp.repeat(observations, n, axis=0), candidates.reshape(batch * n, dim)
        )
        scores = jnp.min(values, axis=-1).reshape(batch, n)  # min_k Q_k(s, a_j)
        best = jnp.argmax(scores, axis=-1)
        return jnp.take_along_axis(candidates, best[:, None, None], axis=1)[:, 0]


class SoftmaxOfN(BestOfN):
    r"""$a = a_j$ drawn with probability $\operatorname{softmax}_j \min_k Q_k(s, a_j)$ over $N$
    proposals (the public codes of Diffusion-QL and Consistency-AC)."""

    def __call__(self, observations, key):
        proposal_key, choice_key = jr.split(key)
        candidates = self.candidates(observations, proposal_key)
        batch, n, dim = candidates.shape
        values = self.values(
            jnp.repeat(observations, n, axis=0), candidates.reshape(batch * n, dim)
        )
        scores = jnp.min(values, axis=-1).reshape(batch, n)
        chosen = jr.categorical(choice_key, scores, axis=-1)
        return jnp.take_along_axis(candidates, chosen[:, None, None], axis=1)[:, 0]


def select_among_samples(
    proposal: AbstractPolicy, values: Callable, selection: str, num_samples: int
) -> AbstractPolicy:
    """The acting rule `selection` over a sampling policy: `"sample"` the proposal itself,
    `"max"` [`BestOfN`][interpolant_rl.agents.BestOfN], `"softmax"`
    [`SoftmaxOfN`][interpolant_rl.agents.SoftmaxOfN] (Diffusion-QL's and Consistency-AC's
    choices)."""
    if selection == "sample":
        return proposal
    chooser = BestOfN if selection == "max" else SoftmaxOfN
    return chooser(proposal, values, num_samples)


class DeterministicActor(eqx.Module):
    """$\\pi(s) = \\tanh(\\mathrm{MLP}(s))$, one state at a time."""

    mlp: MLP

    def __call__(self, cond: Float[Array, " obs_dim"]) -> Float[Array, " action_dim"]:
        return jnp.tanh(self.mlp(cond))


class GaussianMode(AbstractPolicy):
    r"""$a = \tanh(\mu(s))$ of a [`TanhGaussianPolicy`][interpolant_rl.nn.TanhGaussianPolicy]
    (the key is unused).

    **Fields:** `network`."""

    network: TanhGaussianPolicy

    def __call__(self, observations, key):
        del key
        return jax.vmap(self.network.mode)(observations)
