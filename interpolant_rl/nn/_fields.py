r"""Networks on actions: velocity fields, two-time (jump / average-velocity) fields and
one-step noise-conditioned policies."""

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from .._custom_types import Scalar, ScalarLike
from ._mlp import _network_input, MLP


def _time_conditioned_mlp(obs_dim, action_dim, out_dim, width, depth, layer_norm, key) -> MLP:
    """`MLP(concat[cond, x, t]) -> out_dim`: the network of every time-conditioned field."""
    return MLP(obs_dim + action_dim + 1, out_dim, width, depth, layer_norm=layer_norm, key=key)


def _time_conditioned(module, t, x, cond):
    """`module.mlp(concat[cond, x, t])`, with `cond` and `x` checked against the module's sizes."""
    inputs = _network_input(type(module).__name__, module.obs_dim, cond, x, module.action_dim, t)
    return module.mlp(inputs)


class VelocityField(eqx.Module):
    r"""A flow-matching velocity field $v_\theta(t, x \mid \text{cond})$:
    `MLP(concat[cond, x, t])`, with the flow time $t$ fed as a raw scalar.

    It is a velocity field in the sense of the processes (a callable `(t, x, cond) -> v`), so it
    plugs directly into [`interpolant_rl.ProbabilityFlowODE`][],
    [`interpolant_rl.MemorylessSDE`][], [`interpolant_rl.sample`][] and the adjoint ODEs.

    !!! example
        ```python
        field = VelocityField(action_dim, obs_dim, 512, 4, key=key)
        process = interpolant_rl.ProbabilityFlowODE(interpolant_rl.LinearInterpolant(), field)
        action = interpolant_rl.sample(process, noise, cond=obs, num_steps=10)
        ```

    **Fields:** `mlp`, `action_dim`, `obs_dim`.
    """

    mlp: MLP
    action_dim: int = eqx.field(static=True)
    obs_dim: int = eqx.field(static=True)

    def __init__(
        self,
        action_dim: int,
        obs_dim: int,
        width: int,
        depth: int,
        *,
        layer_norm: bool = False,
        key: PRNGKeyArray,
    ):
        r"""**Arguments:**

        - `action_dim`: the dimension of $x$ (and of the output).
        - `obs_dim`: the dimension of `cond`; `0` for an unconditional field (`cond=None`).
        - `width`, `depth`, `layer_norm`: see [`interpolant_rl.nn.MLP`][].
        - `key`: a JAX PRNG key.
        """
        self.mlp = _time_conditioned_mlp(
            obs_dim, action_dim, action_dim, width, depth, layer_norm, key
        )
        self.action_dim = action_dim
        self.obs_dim = obs_dim

    def __call__(
        self,
        t: ScalarLike,
        x: Float[Array, " action_dim"],
        cond: Float[Array, " obs_dim"] | None = None,
    ) -> Float[Array, " action_dim"]:
        r"""**Arguments:** the time `t`, the state `x` (shape `(action_dim,)`) and `cond` (shape
        `(obs_dim,)`, or `None` when `obs_dim == 0`).

        **Returns:** the velocity $v_\theta(t, x \mid \text{cond})$, shape `(action_dim,)`.
        """
        return _time_conditioned(self, t, x, cond)


class NoiseConditionedCritic(eqx.Module):
    r"""A critic of noisy actions, $Q_\phi(s, x_u, u)$ = `MLP(concat[cond, x, u])` (the flow time a
    raw scalar, as in [`interpolant_rl.nn.VelocityField`][]), with the signature
    `(u, x, cond) -> scalar` of a velocity field, so it plugs into
    [`GuidedVelocity`][interpolant_rl.nn.GuidedVelocity].

    Fit it with [`noisy_critic_loss`][interpolant_rl.objectives.noisy_critic_loss].

    **Fields:** `mlp`, `action_dim`, `obs_dim`.
    """

    mlp: MLP
    action_dim: int = eqx.field(static=True)
    obs_dim: int = eqx.field(static=True)

    def __init__(
        self,
        action_dim: int,
        obs_dim: int,
        width: int,
        depth: int,
        *,
        layer_norm: bool = True,
        key: PRNGKeyArray,
    ):
        r"""**Arguments:**

        - `action_dim`: the dimension of $x$.
        - `obs_dim`: the dimension of `cond`; `0` for a critic of the action alone (`cond=None`).
        - `width`, `depth`, `layer_norm`: see [`interpolant_rl.nn.MLP`][] (LayerNorm on by
          default, as in the critics).
        - `key`: a JAX PRNG key.
        """
        self.mlp = _time_conditioned_mlp(obs_dim, action_dim, 1, width, depth, layer_norm, key)
        self.action_dim = action_dim
        self.obs_dim = obs_dim

    def __call__(
        self,
        t: ScalarLike,
        x: Float[Array, " action_dim"],
        cond: Float[Array, " obs_dim"] | None = None,
    ) -> Scalar:
        r"""**Returns:** $Q_\phi(\text{cond}, x, t)$, a scalar."""
        return _time_conditioned(self, t, x, cond)[0]


class ResidualField(eqx.Module):
    r"""A base velocity plus a learned correction, $v(t, x \mid s) = v_\beta(t, x \mid s) +
    f_\theta(t, x \mid s)$: QAM's residual parametrisation of the fine-tuned flow (QAM paper,
    Algorithm 1), in which the adjoint-matching control $u = 2(v - v_\beta)/\sigma = 2f_\theta/\sigma$
    is the correction alone.

    Gradients reach only what the caller differentiates: the agents hold `base` fixed (an EMA copy,
    stop-gradient) and train `correction`.

    **Fields:** `base`, `correction` (any velocity fields `(t, x, cond) -> v`).
    """

    base: VelocityField
    correction: VelocityField

    def __call__(
        self,
        t: ScalarLike,
        x: Float[Array, " action_dim"],
        cond: Float[Array, " obs_dim"] | None = None,
    ) -> Float[Array, " action_dim"]:
        r"""$v_\beta(t, x \mid \text{cond}) + f_\theta(t, x \mid \text{cond})$."""
        return self.base(t, x, cond) + self.correction(t, x, cond)


def zero_output(field: VelocityField) -> VelocityField:
    """`field` with its output layer's weights and bias set to zero: it outputs $0$ everywhere
    until trained (a residual correction that starts at its base)."""
    last = field.mlp.layers[-1]
    return eqx.tree_at(
        lambda f: (f.mlp.layers[-1].weight, f.mlp.layers[-1].bias),
        field,
        (jnp.zeros_like(last.weight), jnp.zeros_like(last.bias)),
    )


class TwoTimeField(eqx.Module):
    r"""A field of two times, $f_\theta(t, s, x \mid \text{cond})$ = `MLP(concat[cond, x, t, s])`
    (both times raw scalars). It serves two objectives:

    - **MoMa QL's jump sampler** $G_\theta(x_t, t, s)$: it predicts the clean action
      $\hat x_1$ used to jump from $x_t$ to a cleaner time $s > t$ with the DDIM map
      $x_s = \alpha_s \hat x_1 + \beta_s (x_t - \alpha_t \hat x_1)/\beta_t$.
    - **MeanFlow's average velocity** $u_\theta(x_t, t, s) = \frac1{s-t}\int_t^s v\,\mathrm d\tau$,
      so that $x_s = x_t + (s - t)\,u_\theta(x_t, t, s)$; one-step sampling is
      $a = x_0 + u_\theta(x_0, 0, 1)$, and $u_\theta(x, t, t)$ is the instantaneous velocity.

    **Fields:** `mlp`, `action_dim`, `obs_dim`.
    """

    mlp: MLP
    action_dim: int = eqx.field(static=True)
    obs_dim: int = eqx.field(static=True)

    def __init__(
        self,
        action_dim: int,
        obs_dim: int,
        width: int,
        depth: int,
        *,
        layer_norm: bool = False,
        key: PRNGKeyArray,
    ):
        r"""**Arguments:**

        - `action_dim`: the dimension of $x$ (and of the output).
        - `obs_dim`: the dimension of `cond`; `0` for an unconditional field (`cond=None`).
        - `width`, `depth`, `layer_norm`: see [`interpolant_rl.nn.MLP`][].
        - `key`: a JAX PRNG key.
        """
        self.mlp = MLP(
            obs_dim + action_dim + 2, action_dim, width, depth, layer_norm=layer_norm, key=key
        )
        self.action_dim = action_dim
        self.obs_dim = obs_dim

    def __call__(
        self,
        t: ScalarLike,
        s: ScalarLike,
        x: Float[Array, " action_dim"],
        cond: Float[Array, " obs_dim"] | None = None,
    ) -> Float[Array, " action_dim"]:
        r"""**Arguments:** the current time `t`, the target time `s`, the state `x` (shape
        `(action_dim,)`) at time `t`, and `cond` (shape `(obs_dim,)`, or `None` when
        `obs_dim == 0`).

        **Returns:** $f_\theta(t, s, x \mid \text{cond})$, shape `(action_dim,)` (a predicted
        $\hat x_1$ or an average velocity, depending on the objective that trains it).
        """
        inputs = _network_input("TwoTimeField", self.obs_dim, cond, x, self.action_dim, t, s)
        return self.mlp(inputs)


class OneStepPolicy(eqx.Module):
    r"""A one-step noise-conditioned policy $a = \mu_\omega(\text{cond}, z)$ =
    `MLP(concat[cond, z])` with $z \sim \mathcal N(0, I)$ of the action's dimension (FQL's
    one-step policy, distilled from a flow policy and trained against the critic).

    The output is not squashed: clip it to the action box when acting, as FQL does.

    **Fields:** `mlp`, `action_dim`, `obs_dim`.
    """

    mlp: MLP
    action_dim: int = eqx.field(static=True)
    obs_dim: int = eqx.field(static=True)

    def __init__(
        self,
        action_dim: int,
        obs_dim: int,
        width: int,
        depth: int,
        *,
        layer_norm: bool = False,
        key: PRNGKeyArray,
    ):
        r"""**Arguments:**

        - `action_dim`: the dimension of the noise and of the action.
        - `obs_dim`: the dimension of `cond`; `0` for an unconditional policy (`cond=None`).
        - `width`, `depth`, `layer_norm`: see [`interpolant_rl.nn.MLP`][].
        - `key`: a JAX PRNG key.
        """
        self.mlp = MLP(
            obs_dim + action_dim, action_dim, width, depth, layer_norm=layer_norm, key=key
        )
        self.action_dim = action_dim
        self.obs_dim = obs_dim

    def __call__(
        self,
        noise: Float[Array, " action_dim"],
        cond: Float[Array, " obs_dim"] | None = None,
    ) -> Float[Array, " action_dim"]:
        r"""**Arguments:** `noise` $z$ (shape `(action_dim,)`) and `cond` (shape `(obs_dim,)`, or
        `None` when `obs_dim == 0`).

        **Returns:** the action, shape `(action_dim,)`.
        """
        inputs = _network_input("OneStepPolicy", self.obs_dim, cond, noise, self.action_dim)
        return self.mlp(inputs)
