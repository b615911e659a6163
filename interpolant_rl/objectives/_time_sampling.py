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
they were); the binned adaptive samplers target the uniform law and learn $p$ online, each by
its own adaptation law:
[`AdaptiveTimeSampler`][interpolant_rl.objectives.AdaptiveTimeSampler] toward the bins whose loss
currently falls fastest (look-ahead decrease), and
[`VarianceMinimisingTimeSampler`][interpolant_rl.objectives.VarianceMinimisingTimeSampler]
toward $p_k \propto \sqrt{\mathbb E[\ell^2 \mid k]}$, the proposal that minimises the variance
of the importance-weighted loss estimate, and
[`GradientNormTimeSampler`][interpolant_rl.objectives.GradientNormTimeSampler] toward
$p_k \propto \sqrt{\mathbb E[\|\nabla_\theta \ell\|^2 \mid k]}$, the proposal that minimises the
variance of the importance-weighted *gradient* estimate (what stochastic gradient descent feels).
"""

import abc
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
from jax.typing import DTypeLike
from jaxtyping import Array, Float, Int, PRNGKeyArray, PyTree

from .._custom_types import ScalarLike


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
        return on_grid(tau, num_steps).astype(dtype), self.importance_weights(tau)

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
        times (on fixed data and noise, the same for both calls). Samplers that need per-sample
        parameter gradients ([`GradientNormTimeSampler`][interpolant_rl.objectives.GradientNormTimeSampler])
        call it as `errors(model, times, rows)` instead: the losses at times `times` of the
        fixed samples with integer indices `rows` (same shape, each in `[0, num_probes)`), one
        sample at a time under `jax.vmap`; an `errors` for them takes `rows=None` (all samples)
        as its third argument, as the agents' behaviour step does. Samplers without state
        return themselves and never call it.
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


def on_grid(times: Float[Array, "..."], num_steps: int) -> Float[Array, "..."]:
    r"""$\lfloor T\tau\rfloor/T$ (at most $(T - 1)/T$): the grid time of a $T$-step sampler
    that a draw $\tau \in [0, 1]$ stands for (see
    [`grid_times`][interpolant_rl.objectives.AbstractTimeSampler.grid_times])."""
    return jnp.minimum(jnp.floor(times * num_steps), num_steps - 1) / num_steps


def _bins(times: Float[Array, "..."], num_bins: int) -> Int[Array, "..."]:
    return jnp.clip(jnp.floor(times * num_bins).astype(jnp.int32), 0, num_bins - 1)


def _shifted_probes(
    key: PRNGKeyArray, num_bins: int, num_probes: int
) -> tuple[Int[Array, " n"], Float[Array, " n"]]:
    """Probe bins `(c + i) mod K` (`c` a random shift) and a uniform time inside each."""
    shift_key, time_key = jr.split(key)
    shift = jr.randint(shift_key, (), 0, num_bins)
    bins = (shift + jnp.arange(num_probes)) % num_bins
    return bins, (bins + jr.uniform(time_key, (num_probes,))) / num_bins


def _binned_moving_average(
    averages: Float[Array, " bins"],
    mass: Float[Array, " bins"],
    rate: float,
    bins: Int[Array, " n"],
    values: Float[Array, " n"],
) -> tuple[Float[Array, " bins"], Float[Array, " bins"]]:
    """One EMA step (rate `rate`) of each probed bin's average toward the mean of its `values`,
    and of its mass toward 1; unprobed bins unchanged."""
    num_bins = averages.shape[0]
    counts = jax.ops.segment_sum(jnp.ones_like(values), bins, num_bins)
    seen = counts > 0
    mean = jax.ops.segment_sum(values, bins, num_bins) / jnp.maximum(counts, 1.0)
    keep = 1.0 - rate
    averages = jnp.where(seen, keep * averages + rate * mean, averages)
    return averages, jnp.where(seen, keep * mass + rate, mass)


def _debiased(
    averages: Float[Array, " bins"], mass: Float[Array, " bins"]
) -> Float[Array, " bins"]:
    seen = mass > 0
    return jnp.where(seen, averages / jnp.where(seen, mass, 1.0), 0.0)


def _root_law(
    averages: Float[Array, " bins"], mass: Float[Array, " bins"], floor: float
) -> Float[Array, " bins"]:
    r"""$(1 - \varepsilon)\sqrt{\hat m}/\sum\sqrt{\hat m} + \varepsilon/K$, a never-probed bin at
    the mean root of the probed ones, uniform when nothing (or only zeros) was observed."""
    num_bins = averages.shape[0]
    seen = mass > 0
    root = jnp.sqrt(jnp.maximum(_debiased(averages, mass), 0.0))
    fill = jnp.sum(root) / jnp.maximum(jnp.sum(seen), 1)
    root = jnp.where(seen, root, fill)
    total = jnp.sum(root)
    law = jnp.where(total > 0, root / jnp.where(total > 0, total, 1.0), 1.0 / num_bins)
    return (1.0 - floor) * law + floor / num_bins


class AbstractBinnedTimeSampler(AbstractTimeSampler):
    r"""A law over $K$ equal bins of $[0, 1]$, uniform inside each bin, importance weighted
    toward the uniform law on $[0, 1]$.

    Subclasses implement `probabilities()` (the bin law $p$, each $p_k > 0$) and `num_bins`
    $K$; drawing and weighting are shared: a bin $k \sim p$, then $t = (k + u)/K$ with
    $u \sim U[0, 1)$, and the weight

    $$w(t) = \frac{1/K}{p_{k(t)}},$$

    so that $\mathbb E_{t \sim p}[w(t)\,\ell(t)] = \sum_k p_k\,\frac{1/K}{p_k}\,K\!\int_{\text{bin }k}\ell
    = \int_0^1 \ell(t)\,dt$ for any $\ell$, whatever $p$ is. The weights pass no gradient to
    the sampler's state (`stop_gradient`), and since a sampler's state is fixed before a step
    draws its times, the expectation holds at every step, conditionally on that state.
    """

    @property
    @abc.abstractmethod
    def num_bins(self) -> int:
        r"""$K$, the number of bins."""

    @abc.abstractmethod
    def probabilities(self) -> Float[Array, " bins"]:
        r"""The bin law $p$ (positive, summing to 1)."""

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


class AdaptiveTimeSampler(AbstractBinnedTimeSampler):
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


class AbstractRootLawTimeSampler(AbstractBinnedTimeSampler):
    r"""A binned law $p_k \propto \sqrt{\hat m_k}$ (floor-mixed) over per-bin moving averages
    $m$ of some non-negative per-probe statistic, with the EMA's mass $c$ for Adam's bias
    correction $\hat m = m / c$: what
    [`VarianceMinimisingTimeSampler`][interpolant_rl.objectives.VarianceMinimisingTimeSampler]
    ($\ell^2$) and [`GradientNormTimeSampler`][interpolant_rl.objectives.GradientNormTimeSampler]
    ($\|\nabla_\theta \ell\|^2$) share; they differ in the statistic `adapt` observes.

    Subclasses name their moving averages (`averages`, a property over their own field) and
    have the fields `mass`, `rate` $\gamma \in (0, 1]$ and `floor` $\varepsilon \in (0, 1]$.
    """

    mass: eqx.AbstractVar[Float[Array, " bins"]]
    rate: eqx.AbstractVar[float]
    floor: eqx.AbstractVar[float]

    @property
    @abc.abstractmethod
    def averages(self) -> Float[Array, " bins"]:
        r"""The per-bin moving averages $m$ (before bias correction)."""

    def __check_init__(self):
        if not 0.0 < self.floor <= 1.0:
            raise ValueError(f"floor must lie in (0, 1], got {self.floor}")
        if not 0.0 < self.rate <= 1.0:
            raise ValueError(f"rate must lie in (0, 1], got {self.rate}")
        shape = self.averages.shape
        if len(shape) != 1 or shape[0] < 1 or self.mass.shape != shape:
            name = self._averages_name
            raise ValueError(
                f"{name} and mass must both have shape (num_bins,), got "
                f"{shape} and {self.mass.shape}"
            )

    @property
    def num_bins(self) -> int:
        return self.averages.shape[0]

    def moments(self) -> Float[Array, " bins"]:
        r"""The debiased averages $\hat m_k = m_k / c_k$ (0 where a bin was never probed)."""
        return _debiased(self.averages, self.mass)

    def probabilities(self) -> Float[Array, " bins"]:
        r"""The bin law $p = (1 - \varepsilon)\sqrt{\hat m}/\sum\sqrt{\hat m} + \varepsilon/K$."""
        return _root_law(self.averages, self.mass, self.floor)

    def _observed(self, bins: Int[Array, " n"], values: Float[Array, " n"]) -> tuple:
        """The averages and mass after one EMA step on per-probe `values` in `bins`."""
        averages, mass = _binned_moving_average(self.averages, self.mass, self.rate, bins, values)
        return averages.astype(self.averages.dtype), mass.astype(self.mass.dtype)


def _fresh(num_bins: int) -> Float[Array, " bins"]:
    """Zeros for a fresh root-law sampler's state (the uniform law), `num_bins` checked."""
    if not isinstance(num_bins, int) or num_bins < 1:
        raise ValueError(f"num_bins must be a positive integer, got {num_bins!r}")
    return jnp.zeros(num_bins)


class VarianceMinimisingTimeSampler(AbstractRootLawTimeSampler):
    r"""Variance-minimising importance sampling of the times (the "loss-aware" schedule of
    Nichol and Dhariwal, *Improved Denoising Diffusion Probabilistic Models*, ICML 2021, §3.3,
    which samples $t \propto \sqrt{\mathbb E[L_t^2]}$): bins whose per-sample loss has a large
    second moment are drawn more often, with importance weights that keep the objective the
    uniform-time one.

    **Sampling.** $[0, 1]$ is cut into $K$ equal bins; the state is an exponential moving
    average, per bin, of the second moment of the per-sample loss,
    $m_k \approx \mathbb E[\ell(t)^2 \mid t \in \text{bin } k]$, and the bin law is

    $$p_k = (1 - \varepsilon)\,\frac{\sqrt{m_k}}{\sum_j \sqrt{m_j}} + \frac{\varepsilon}{K}
      \;\ge\; \frac{\varepsilon}{K},$$

    a bin $k \sim p$, $t$ uniform inside it, and the weight $w(t) = (1/K)/p_{k(t)} \le
    1/\varepsilon$ (as in
    [`AbstractBinnedTimeSampler`][interpolant_rl.objectives.AbstractBinnedTimeSampler]): the
    weighted objective has the uniform-time expectation and minimiser for any $m$.

    **Why $\sqrt{m_k}$.** With $L = \int_0^1 \ell = \frac1K \sum_k \mathbb E[\ell \mid k]$ the
    target, one weighted draw $w(t)\,\ell(t)$ is unbiased for $L$ and has variance

    $$\operatorname{Var}_p[w\,\ell] = \sum_k p_k \Big(\frac{1}{K p_k}\Big)^2 m_k - L^2
      = \frac1{K^2}\sum_k \frac{m_k}{p_k} - L^2 .$$

    Minimising $\sum_k m_k/p_k$ over the simplex (a Lagrange multiplier $\lambda$:
    $m_k/p_k^2 = \lambda$) gives $p_k \propto \sqrt{m_k}$, with minimum variance
    $\big(\frac1K \sum_k \sqrt{m_k}\big)^2 - L^2 \ge 0$ (Cauchy–Schwarz: it is never worse than
    uniform, whose variance is $\frac1K \sum_k m_k - L^2$). This is the standard optimal
    importance-sampling proposal for an unbiased estimate of a mean, $q^* \propto
    \sqrt{\mathbb E[\ell^2 \mid t]}$; for a non-negative loss that does not vary within a bin,
    $\sqrt{m_k} = \ell_k$ and the estimate becomes exact (zero variance), which is why the
    proposal is tied to non-negative losses. The floor $\varepsilon$ keeps every bin drawn
    (the mixture is not the optimum under the constraint $p_k \ge \varepsilon/K$, but it stays
    close to it when $\varepsilon$ is small, and bounds the weights). Note what is minimised:
    the variance of the *loss value's* estimate, Nichol and Dhariwal's proxy; the optimiser
    feels the variance of the *gradient*, whose per-sample second moment grows with the
    residual but also depends on the network's Jacobian at $t$. On the behaviour-cloning
    [benchmark](../benchmarks.md#adaptive-time-sampling-issue-16) this law cut the variance of
    the flow-matching loss estimate by about a third but left the gradient's unchanged, and
    reached no given flow-matching loss in fewer updates than uniform times; on the
    $\varepsilon$-prediction loss, whose gradient grows toward the data end, it also cut the
    gradient's variance and needed fewer updates, though fewer still were needed by
    [`GradientNormTimeSampler`][interpolant_rl.objectives.GradientNormTimeSampler], which targets
    the gradient directly.

    **Adaptation** (`adapt`, once per training step). On `num_probes` probe times stratified
    over the bins (probe $i$ in bin $(c + i) \bmod K$, $c$ a random shift so that every bin is
    probed over time even when `num_probes` $< K$; uniform inside the bin) and one fixed draw
    of data and noise, the per-sample losses $\ell_i$ of the model *before* the step (on data it
    has not yet been trained on) give per-bin means of $\ell^2$, and for each probed bin

    $$m_k \leftarrow (1 - \gamma)\,m_k + \gamma\,\overline{\ell^2}_k, \qquad
      c_k \leftarrow (1 - \gamma)\,c_k + \gamma,$$

    with $c_k$ the EMA's mass (starting at 0; $c_k = 1 - (1 - \gamma)^{n_k}$ after $n_k$
    probed steps). The law uses the debiased moment $\hat m_k = m_k / c_k$ (Adam's bias
    correction), so the first step already sees the losses' scale; unprobed bins keep their
    values, a never-probed bin takes the mean $\sqrt{\hat m}$ of the probed ones, and with no
    bin probed (or all losses zero) the law is uniform. Unlike the original schedule, which
    keeps the last 10 losses of each of its 4000 timesteps and samples uniformly until all are
    filled, the state here is two arrays of $K$ numbers carried in the agent.

    **Fields:** `second_moments` $m$ `(K,)` and `mass` $c$ `(K,)` (zeros: uniform; the state);
    static: `rate` $\gamma \in (0, 1]$ (default 0.05, a memory of about 20 steps), `floor`
    $\varepsilon \in (0, 1]$ (default 0.1, weights $\le 10$).

    !!! example
        ```python
        sampler = VarianceMinimisingTimeSampler.uniform(num_bins=10)
        loss = flow_matching_loss(interp, field, actions, cond, key, time_sampler=sampler)
        ```
    """

    second_moments: Float[Array, " bins"]
    mass: Float[Array, " bins"]
    rate: float = eqx.field(static=True, default=0.05)
    floor: float = eqx.field(static=True, default=0.1)
    _averages_name = "second_moments"

    @property
    def averages(self) -> Float[Array, " bins"]:
        return self.second_moments

    @classmethod
    def uniform(
        cls, num_bins: int = 10, *, rate: ScalarLike = 0.05, floor: ScalarLike = 0.1
    ) -> "VarianceMinimisingTimeSampler":
        r"""A fresh sampler: $K$ = `num_bins` bins, nothing observed yet (the uniform law)."""
        return cls(_fresh(num_bins), _fresh(num_bins), float(rate), float(floor))

    def adapt(
        self,
        errors: Callable[[PyTree, Float[Array, " n"]], Float[Array, " n"]],
        before: PyTree,
        after: PyTree,
        key: PRNGKeyArray,
        num_probes: int,
    ) -> "VarianceMinimisingTimeSampler":
        del after
        bins, times = _shifted_probes(key, self.num_bins, num_probes)
        return self.with_losses(bins, jax.lax.stop_gradient(errors(before, times)))

    def with_losses(
        self, bins: Int[Array, " n"], losses: Float[Array, " n"]
    ) -> "VarianceMinimisingTimeSampler":
        r"""The update of the moving averages from per-probe losses `losses` observed in bins
        `bins` (the second half of `adapt`, exposed for custom probes)."""
        return VarianceMinimisingTimeSampler(
            *self._observed(bins, losses**2), self.rate, self.floor
        )


class GradientNormTimeSampler(AbstractRootLawTimeSampler):
    r"""Gradient-norm importance sampling of the times (Katharopoulos and Fleuret, *Not All
    Samples Are Created Equal: Deep Learning with Importance Sampling*, ICML 2018; Alain,
    Lamb, Sankar, Courville and Bengio, *Variance Reduction in SGD by Distributed Importance
    Sampling*, 2015, both over training examples; here over flow times): bins whose per-sample
    *parameter gradient* has a large second moment are drawn more often, with importance weights
    that keep the objective (and its gradient's mean) the uniform-time one.

    **Sampling.** $[0, 1]$ is cut into $K$ equal bins; the state is an exponential moving
    average, per bin, of the squared norm of the per-sample gradient,
    $G_k \approx \mathbb E\big[\|\nabla_\theta \ell(\theta; t, \xi)\|^2 \,\big|\, t \in \text{bin } k\big]$
    ($\xi$ the sample's data and noise), and the bin law is

    $$p_k = (1 - \varepsilon)\,\frac{\sqrt{G_k}}{\sum_j \sqrt{G_j}} + \frac{\varepsilon}{K}
      \;\ge\; \frac{\varepsilon}{K},$$

    a bin $k \sim p$, $t$ uniform inside it, and the weight $w(t) = (1/K)/p_{k(t)} \le
    1/\varepsilon$ (as in
    [`AbstractBinnedTimeSampler`][interpolant_rl.objectives.AbstractBinnedTimeSampler]).

    **Why $\sqrt{G_k}$.** The step's gradient estimate is an average of independent draws
    $\hat g = w(t)\,\nabla_\theta \ell(\theta; t, \xi)$, $t \sim p$, each unbiased for
    $\nabla L = \frac1K \sum_k \mathbb E[\nabla_\theta \ell \mid k]$ whatever $p$ is (the
    weights do not depend on $\theta$). The trace of one draw's covariance is

    $$\operatorname{tr}\operatorname{Cov}_p[\hat g] = \mathbb E_p\|\hat g\|^2 - \|\nabla L\|^2
      = \sum_k p_k \Big(\frac{1}{K p_k}\Big)^2 G_k - \|\nabla L\|^2
      = \frac1{K^2}\sum_k \frac{G_k}{p_k} - \|\nabla L\|^2 ,$$

    and only the first term depends on $p$. Minimising $\sum_k G_k/p_k$ subject to
    $\sum_k p_k = 1$: the Lagrangian $\sum_k G_k/p_k + \lambda(\sum_k p_k - 1)$ is stationary
    where $-G_k/p_k^2 + \lambda = 0$, i.e. $p_k = \sqrt{G_k/\lambda} \propto \sqrt{G_k}$ (a
    minimum: the objective is convex on the simplex), and then

    $$\operatorname{tr}\operatorname{Cov}_{p^*}[\hat g] = \Big(\frac1K\sum_k \sqrt{G_k}\Big)^2 -
      \|\nabla L\|^2 \;\le\; \frac1K\sum_k G_k - \|\nabla L\|^2 =
      \operatorname{tr}\operatorname{Cov}_{\text{uniform}}[\hat g]$$

    by Cauchy–Schwarz, with equality only when every $G_k$ is the same. A batch of $B$ draws
    divides both by $B$. Since $\mathbb E\|\hat g\|^2 = \|\nabla L\|^2 + \operatorname{tr}\operatorname{Cov}$
    is what enters the expected decrease of an SGD step on a smooth objective,
    $\mathbb E[L(\theta - \eta \hat g)] \le L(\theta) - \eta\|\nabla L\|^2 + \tfrac{\beta\eta^2}{2}\,
    \mathbb E\|\hat g\|^2$ ($\beta$ the smoothness constant), this is the proposal that
    maximises that bound — the argument of both papers. It differs from
    [`VarianceMinimisingTimeSampler`][interpolant_rl.objectives.VarianceMinimisingTimeSampler],
    which puts the loss's second moment $\mathbb E[\ell^2 \mid k]$ where $G_k$ stands: the
    gradient's second moment also carries the network's sensitivity at each $t$. Two caveats:
    the optimum is over laws constant on each bin (within a bin the times stay uniform), and
    Adam rescales the gradient per coordinate, so the bound speaks of plain SGD; the floor
    $\varepsilon$ keeps every bin drawn and bounds the weights, at the price of a slightly
    larger variance than $p^*$'s.

    **Adaptation** (`adapt`, once per training step). On $m$ = min(`num_probes`, `max_probes`)
    probe times stratified over the bins (probe $i$ in bin
    $(c + i) \bmod K$, $c$ a random shift; uniform inside the bin), each with its own fixed
    sample (`rows` $= 0, \dots, m - 1$ of the step's probe data and noise), the squared norms
    $\|\nabla_\theta \ell_i\|^2$ of the per-sample gradients of the model *before* the step
    (over all its inexact arrays) give per-bin means, and for each probed bin

    $$G_k \leftarrow (1 - \gamma)\,G_k + \gamma\,\overline{\|\nabla_\theta \ell\|^2}_k, \qquad
      c_k \leftarrow (1 - \gamma)\,c_k + \gamma,$$

    the law using the debiased $\hat G_k = G_k / c_k$; unprobed bins keep their values, a
    never-probed bin takes the mean $\sqrt{\hat G}$ of the probed ones, and with nothing
    probed the law is uniform (all as in the variance-minimising law). The per-sample
    gradients come from `errors(model, times, rows)` (see
    [`adapt`][interpolant_rl.objectives.AbstractTimeSampler.adapt]) as `jax.vmap` of
    `jax.grad` over the $m$ probes.

    **Cost.** One forward and one backward pass of the model per probe, i.e. about one
    training step's arithmetic on a batch of $m$ (the look-ahead law needs two forward passes
    on the probe batch, the variance-minimising law one, and neither a backward pass), plus
    memory for the $m \times P$ per-sample gradient entries ($P$ = the model's parameter
    count): $64 \times 9{,}000$ floats (2 MB) for the 3×64 field of the benchmark, about
    $64 \times 800{,}000$ (200 MB) for a 4×512 field — lower `max_probes` for large networks.
    Affordable for the small networks of the agents; measured on the
    [benchmark](../benchmarks.md#adaptive-time-sampling-issue-16).

    **Fields:** `square_norms` $G$ `(K,)` and `mass` $c$ `(K,)` (zeros: uniform; the state);
    static: `rate` $\gamma \in (0, 1]$ (default 0.05, a memory of about 20 steps), `floor`
    $\varepsilon \in (0, 1]$ (default 0.1, weights $\le 10$), `max_probes` (default 64: the
    most per-sample gradients per step).

    !!! example
        ```python
        sampler = GradientNormTimeSampler.uniform(num_bins=10)
        loss = flow_matching_loss(interp, field, actions, cond, key, time_sampler=sampler)
        ```
    """

    square_norms: Float[Array, " bins"]
    mass: Float[Array, " bins"]
    rate: float = eqx.field(static=True, default=0.05)
    floor: float = eqx.field(static=True, default=0.1)
    max_probes: int = eqx.field(static=True, default=64)

    _averages_name = "square_norms"

    @property
    def averages(self) -> Float[Array, " bins"]:
        return self.square_norms

    def __check_init__(self):
        if not (isinstance(self.max_probes, int) and self.max_probes >= 1):
            raise ValueError(f"max_probes must be a positive integer, got {self.max_probes!r}")

    @classmethod
    def uniform(
        cls,
        num_bins: int = 10,
        *,
        rate: ScalarLike = 0.05,
        floor: ScalarLike = 0.1,
        max_probes: int = 64,
    ) -> "GradientNormTimeSampler":
        r"""A fresh sampler: $K$ = `num_bins` bins, nothing observed yet (the uniform law)."""
        return cls(_fresh(num_bins), _fresh(num_bins), float(rate), float(floor), max_probes)

    def adapt(
        self,
        errors: Callable[..., Float[Array, " n"]],
        before: PyTree,
        after: PyTree,
        key: PRNGKeyArray,
        num_probes: int,
    ) -> "GradientNormTimeSampler":
        del after
        probes = min(num_probes, self.max_probes)
        bins, times = _shifted_probes(key, self.num_bins, probes)
        norms = _per_sample_gradient_norms(errors, before, times, jnp.arange(probes))
        return self.with_square_norms(bins, jax.lax.stop_gradient(norms))

    def with_square_norms(
        self, bins: Int[Array, " n"], square_norms: Float[Array, " n"]
    ) -> "GradientNormTimeSampler":
        r"""The update of the moving averages from per-probe squared gradient norms
        `square_norms` observed in bins `bins` (the second half of `adapt`, exposed for custom
        probes)."""
        return GradientNormTimeSampler(
            *self._observed(bins, square_norms), self.rate, self.floor, self.max_probes
        )


def _per_sample_gradient_norms(
    errors: Callable[..., Float[Array, " n"]],
    model: PyTree,
    times: Float[Array, " m"],
    rows: Int[Array, " m"],
) -> Float[Array, " m"]:
    r"""$\|\nabla_\theta \ell_i\|^2$: the squared norms of the per-sample gradients of
    `errors(model, times[i:i+1], rows[i:i+1])` with respect to the model's inexact arrays
    (`jax.vmap` of `jax.grad`, one sample each; see
    [`GradientNormTimeSampler`][interpolant_rl.objectives.GradientNormTimeSampler])."""
    params, static = eqx.partition(model, eqx.is_inexact_array)

    def square_norm(time, row):
        def loss(params):
            return errors(eqx.combine(params, static), time[None], row[None])[0]

        leaves = jax.tree.leaves(jax.grad(loss)(params))
        return sum((jnp.sum(leaf**2) for leaf in leaves), jnp.zeros((), times.dtype))

    return jax.vmap(square_norm)(times, rows)


def importance_weighted(
    values: Float[Array, " batch"], importance: Float[Array, " batch"] | None
) -> Float[Array, " batch"]:
    """Per-sample losses times their importance weights (`None`: unchanged, not multiplied)."""
    return values if importance is None else values * importance
