r"""Time samplers: the law of the flow times $t \in [0, 1]$ that a loss averages over, and the
importance weights that keep an adaptive law's objective equal to the uniform one's.

Every loss that draws times ([`flow_matching_loss`][interpolant_rl.objectives.flow_matching_loss],
[`denoising_loss`][interpolant_rl.objectives.denoising_loss] and its QSM/DAC relatives,
[`meanflow_loss`][interpolant_rl.objectives.meanflow_loss]) takes a `time_sampler`. A sampler
draws times $t_i \sim p$ and returns importance weights $w(t_i)$ that multiply each sample's
loss, so that for any per-time loss $\ell$

$$\mathbb E_{t \sim p}\big[w(t)\,\ell(t)\big] = \mathbb E_{t \sim q}\big[\ell(t)\big],$$

with $q$ the sampler's *target* law: the sampled objective has the target law's expectation,
hence its minimiser, whatever $p$ is; only the variance of its stochastic gradients changes.
Fixed laws ([`UniformTimes`][interpolant_rl.objectives.UniformTimes],
[`LogitNormalTimes`][interpolant_rl.objectives.LogitNormalTimes]) are their own target
($w \equiv 1$, returned as `None` so that nothing is multiplied and the losses stay exactly as
they were); [`AdaptiveTimeSampler`][interpolant_rl.objectives.AdaptiveTimeSampler] targets the
uniform law and learns $p$ online.
"""

import abc
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
from jax.typing import DTypeLike
from jaxtyping import Array, Float, Int, PRNGKeyArray, PyTree


class AbstractTimeSampler(eqx.Module):
    r"""Draws independent times in $[0, 1]$ and the importance weights of its draws.

    Subclasses implement `__call__(key, shape, dtype) -> times`. They inherit, and may override:

    - `importance_weights(times)`: $w(t) = q(t)/p(t)$ toward the sampler's target law $q$, or
      `None` for $w \equiv 1$ (the default: the sampler's law is its target);
    - `grid_times(key, shape, num_steps, dtype)`: times on the grid $\{k/T\}_{k < T}$ of a
      $T$-step sampler and their weights;
    - `adapt(errors, before, after, key, num_probes)`: the sampler after one training step
      (the default: unchanged, for samplers without state).
    """

    @abc.abstractmethod
    def __call__(
        self, key: PRNGKeyArray, shape: tuple[int, ...], dtype: DTypeLike = float
    ) -> Float[Array, "..."]:
        r"""Times of the given `shape` (and `dtype`)."""

    def importance_weights(self, times: Float[Array, "..."]) -> Float[Array, "..."] | None:
        r"""The weights $w(t)$ of draws `times` (same shape), or `None` for $w \equiv 1$."""
        del times
        return None

    def grid_times(
        self, key: PRNGKeyArray, shape: tuple[int, ...], num_steps: int, dtype: DTypeLike = float
    ) -> tuple[Float[Array, "..."], Float[Array, "..."] | None]:
        r"""Times on the grid $\{0, 1/T, \dots, (T - 1)/T\}$ ($T$ = `num_steps`), drawn as
        $\lfloor T\tau\rfloor/T$ with $\tau$ from this sampler, and the weights $w(\tau)$: a
        uniform $\tau$ gives the uniform law on the grid."""
        tau = self(key, shape, dtype)
        grid = jnp.minimum(jnp.floor(tau * num_steps), num_steps - 1)
        return grid.astype(dtype) / num_steps, self.importance_weights(tau)

    def adapt(
        self,
        errors: Callable[[PyTree, Float[Array, " n"]], Float[Array, " n"]],
        before: PyTree,
        after: PyTree,
        key: PRNGKeyArray,
        num_probes: int,
    ) -> "AbstractTimeSampler":
        r"""The sampler after one training step from model `before` to model `after`.

        `errors(model, times)` returns the per-sample losses of `model` at `num_probes` given
        times (on fixed data and noise, the same for both calls). Samplers without state return
        themselves and never call it.
        """
        del errors, before, after, key, num_probes
        return self


class UniformTimes(AbstractTimeSampler):
    r"""$t \sim U[0, 1)$: the default of every loss except MeanFlow's. On a grid of $T$ steps it
    draws $k \sim U\{0, \dots, T - 1\}$ directly (`jax.random.randint`)."""

    def __call__(
        self, key: PRNGKeyArray, shape: tuple[int, ...], dtype: DTypeLike = float
    ) -> Float[Array, "..."]:
        return jr.uniform(key, shape, dtype=dtype)

    def grid_times(
        self, key: PRNGKeyArray, shape: tuple[int, ...], num_steps: int, dtype: DTypeLike = float
    ) -> tuple[Float[Array, "..."], None]:
        return jr.randint(key, shape, 0, num_steps).astype(dtype) / num_steps, None


class LogitNormalTimes(AbstractTimeSampler):
    r"""$\tau = \operatorname{sigmoid}(\mu + \sigma z)$ with $z \sim \mathcal N(0, 1)$.

    The default $\mu = 0.4$, $\sigma = 1$ is MeanFlow's logit-normal$(-0.4, 1)$ written in this
    package's time direction: MeanFlow runs from data ($\tau = 0$) to noise ($\tau = 1$), and
    $\tau \mapsto 1 - \tau$ maps logit-normal$(\mu, \sigma)$ to logit-normal$(-\mu, \sigma)$; both
    put a little more mass on the data side of $\tau = 1/2$.

    **Fields:** `mean` $\mu$, `std` $\sigma > 0$.
    """

    mean: float = 0.4
    std: float = 1.0

    def __check_init__(self):
        if not self.std > 0:
            raise ValueError(f"std must be positive, got {self.std}")

    def __call__(
        self, key: PRNGKeyArray, shape: tuple[int, ...], dtype: DTypeLike = float
    ) -> Float[Array, "..."]:
        return jax.nn.sigmoid(self.mean + self.std * jr.normal(key, shape, dtype=dtype))


def _bins(times: Float[Array, "..."], num_bins: int) -> Int[Array, "..."]:
    return jnp.clip(jnp.floor(times * num_bins).astype(jnp.int32), 0, num_bins - 1)


class AdaptiveTimeSampler(AbstractTimeSampler):
    r"""Adaptive non-uniform time sampling (after Kim, Ki, Shim and Lee, *Adaptive Non-uniform
    Timestep Sampling for Accelerating Diffusion Model Training*, arXiv:2411.09998): times are
    drawn more often where training steps are currently reducing the objective most, with
    importance weights that keep the objective the uniform-time one.

    **Sampling.** $[0, 1]$ is cut into $K$ equal bins. A softmax policy $\pi = \operatorname{softmax}(\phi)$
    over the bins (the state: logits $\phi \in \mathbb R^K$) is mixed with the uniform law,

    $$p_k = (1 - \varepsilon)\,\pi_k + \frac{\varepsilon}{K} \;\ge\; \frac{\varepsilon}{K},$$

    a bin $k \sim p$ is drawn and $t$ uniformly inside it, and each draw carries the weight

    $$w(t) = \frac{1/K}{p_{k(t)}} \;\le\; \frac1\varepsilon,$$

    so that $\mathbb E_{t \sim p}[w(t)\,\ell(t)] = \sum_k p_k\,\frac{1/K}{p_k}\,K\!\int_{\text{bin }k}\ell
    = \int_0^1 \ell(t)\,dt$ for any $\ell$: the weighted objective is the uniform one
    (same expectation, same minimiser) and the weights are bounded by the floor $\varepsilon$.

    **Adaptation** (`adapt`, once per training step). On `num_probes` probe times stratified
    over the bins (probe $i$ in bin $i \bmod K$, uniform inside it) and one fixed draw of data and
    noise, the per-sample losses are evaluated with the parameters before and after the step;
    their per-bin means give the *look-ahead decrease*

    $$\Delta_k = \bar\ell_k(\theta_{\text{before}}) - \bar\ell_k(\theta_{\text{after}}),
      \qquad r_k = \Delta_k \big/ \big(\tfrac1K\textstyle\sum_j |\Delta_j| + 10^{-12}\big),$$

    normalised to a scale-free reward $r$. The logits then take one natural-gradient ascent step
    on $\mathbb E_{k \sim \pi}[r_k] + \beta\,H(\pi)$, which for a softmax over a table is

    $$\phi \leftarrow (1 - \eta\beta)\,\phi + \eta\,r \quad(\text{then centred}),$$

    an exponential moving average of $r/\beta$: at a stationary reward $\pi \propto e^{\bar r/\beta}$,
    bins whose loss falls fastest are sampled most, and $\beta$ (the entropy weight) pulls $\pi$
    back toward uniform as the decreases even out. Bins without a probe keep their logit.

    **What is taken from the paper, and what is simplified.** The paper learns a sampler
    $\pi_\phi$ online so that it prefers the timesteps whose gradient updates most reduce the
    objective, the reduction being measured before/after an update by a surrogate $\Delta$
    computed on a small subset of timesteps, and it keeps $\pi_\phi$ exploratory with an entropy
    term. Here:

    1. $\pi_\phi$ is a table of $K$ logits (the simplest parametrisation of a law over $K$ bins),
       not a network, so the whole state is one array carried in the agent and updated inside
       the jitted step.
    2. *Credit*, the named simplification (`look-ahead decrease per bin`): our batches mix
       many times in one update, so the reduction cannot be attributed to the time that caused
       it (the paper's reward for timestep $t$ is the objective's decrease after an update at
       $t$). Instead each bin is credited with the decrease of *its own* loss over the step,
       measured on the probe set with common data and noise (which is this library's
       "subset of timesteps": one stratified probe batch). It prioritises the bins where
       learning is currently happening, not the bins whose updates help the others most.
    3. Because every bin's reward is observed at every step, the policy gradient is taken in
       closed form (the natural gradient of a tabular softmax) instead of by REINFORCE
       sampling, and it is one line: the EMA above.
    4. The losses are importance weighted (above), so the objective and its minimiser are the
       uniform-time ones; an adaptive $p$ can then only change the variance of the gradient,
       and the floor $\varepsilon$ bounds the weights.

    **Fields:** `logits` $\phi$ `(K,)` (zeros: uniform; the only array, the state); static:
    `learning_rate` $\eta > 0$ (default 0.05); `entropy` $\beta > 0$ (default 1); `floor`
    $\varepsilon \in (0, 1]$ (default 0.25, weights $\le 4$).

    !!! example
        ```python
        sampler = AdaptiveTimeSampler.uniform(num_bins=10)
        loss = flow_matching_loss(interp, field, actions, cond, key, time_sampler=sampler)
        ```
    """

    logits: Float[Array, " bins"]
    learning_rate: float = eqx.field(static=True, default=0.05)
    entropy: float = eqx.field(static=True, default=1.0)
    floor: float = eqx.field(static=True, default=0.25)

    def __check_init__(self):
        if not 0.0 < self.floor <= 1.0:
            raise ValueError(f"floor must lie in (0, 1], got {self.floor}")
        if not (self.learning_rate > 0 and self.entropy > 0):
            raise ValueError("learning_rate and entropy must be positive")
        if self.learning_rate * self.entropy >= 1.0:
            raise ValueError("learning_rate * entropy must be < 1 (the logits' EMA rate)")
        if self.logits.ndim != 1 or self.logits.shape[0] < 1:
            raise ValueError(f"logits must have shape (num_bins,), got {self.logits.shape}")

    @classmethod
    def uniform(
        cls,
        num_bins: int = 10,
        *,
        learning_rate: float = 0.05,
        entropy: float = 1.0,
        floor: float = 0.25,
    ) -> "AdaptiveTimeSampler":
        r"""A fresh sampler: $K$ = `num_bins` bins, zero logits (the uniform law)."""
        if not isinstance(num_bins, int) or num_bins < 1:
            raise ValueError(f"num_bins must be a positive integer, got {num_bins!r}")
        return cls(jnp.zeros(num_bins), learning_rate, entropy, floor)

    @property
    def num_bins(self) -> int:
        return self.logits.shape[0]

    def probabilities(self) -> Float[Array, " bins"]:
        r"""The bin law $p = (1 - \varepsilon)\operatorname{softmax}(\phi) + \varepsilon/K$."""
        return (1.0 - self.floor) * jax.nn.softmax(self.logits) + self.floor / self.num_bins

    def __call__(
        self, key: PRNGKeyArray, shape: tuple[int, ...], dtype: DTypeLike = float
    ) -> Float[Array, "..."]:
        bin_key, offset_key = jr.split(key)
        bins = jr.categorical(bin_key, jnp.log(self.probabilities()), shape=shape)
        offset = jr.uniform(offset_key, shape, dtype=dtype)
        return jnp.minimum((bins + offset) / self.num_bins, 1.0).astype(dtype)

    def importance_weights(self, times: Float[Array, "..."]) -> Float[Array, "..."]:
        p = jax.lax.stop_gradient(self.probabilities())
        return (1.0 / (self.num_bins * p[_bins(times, self.num_bins)])).astype(times.dtype)

    def adapt(
        self,
        errors: Callable[[PyTree, Float[Array, " n"]], Float[Array, " n"]],
        before: PyTree,
        after: PyTree,
        key: PRNGKeyArray,
        num_probes: int,
    ) -> "AdaptiveTimeSampler":
        num_bins = self.num_bins
        bins = jnp.arange(num_probes) % num_bins
        times = (bins + jr.uniform(key, (num_probes,))) / num_bins
        drop = jax.lax.stop_gradient(errors(before, times) - errors(after, times))
        return self.with_decrease(bins, drop)

    def with_decrease(
        self, bins: Int[Array, " n"], decrease: Float[Array, " n"]
    ) -> "AdaptiveTimeSampler":
        r"""The update of the logits from per-probe loss decreases `decrease` observed in bins
        `bins` (the second half of `adapt`, exposed for custom probes)."""
        num_bins = self.num_bins
        counts = jax.ops.segment_sum(jnp.ones_like(decrease), bins, num_bins)
        seen = counts > 0
        delta = jax.ops.segment_sum(decrease, bins, num_bins) / jnp.maximum(counts, 1.0)
        scale = jnp.sum(jnp.abs(delta)) / jnp.maximum(jnp.sum(seen), 1.0) + 1e-12
        reward = delta / scale
        stepped = (1.0 - self.learning_rate * self.entropy) * self.logits
        stepped = stepped + self.learning_rate * reward
        logits = jnp.where(seen, stepped, self.logits)
        logits = logits - jnp.mean(logits)
        return AdaptiveTimeSampler(
            logits.astype(self.logits.dtype), self.learning_rate, self.entropy, self.floor
        )


def importance_weighted(
    values: Float[Array, " batch"], importance: Float[Array, " batch"] | None
) -> Float[Array, " batch"]:
    """Per-sample losses times their importance weights (`None`: unchanged, not multiplied)."""
    return values if importance is None else values * importance
