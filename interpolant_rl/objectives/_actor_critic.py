r"""Actor losses of the value-gradient baselines: one-step distillation + Q (FQL), backprop
through the multi-step flow (FBRAC), and TD3+BC (ReBRAC), with ReBRAC's critic penalty.

`q_function` is always a batched critic `(observations, actions) -> values` of shape
`(batch,)` (e.g. an ensemble mean); the losses differentiate through it into the actions only
(the critic's own parameters should be held fixed by the caller).
"""

from collections.abc import Callable

import diffrax
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from .._custom_types import Scalar, ScalarLike, VelocityField
from .._interpolant import AbstractInterpolant
from .._process import ProbabilityFlowODE
from .._sampling import sample
from ._q_term import normalised_q_loss
from ._weighting import weighted_mean


QFunction = Callable[
    [Float[Array, "batch obs_dim"], Float[Array, "batch dim"]], Float[Array, " batch"]
]


def one_step_distillation_loss(
    policy: Callable[[Float[Array, " dim"], Float[Array, " obs_dim"]], Float[Array, " dim"]],
    teacher_actions: Float[Array, "batch dim"],
    noise: Float[Array, "batch dim"],
    observations: Float[Array, "batch obs_dim"],
    q_function: QFunction,
    alpha: ScalarLike,
    *,
    normalise_q: bool = False,
) -> tuple[Scalar, dict[str, Scalar]]:
    r"""FQL's one-step policy loss: distil a multi-step flow and climb the critic,

    $$\mathcal L(\omega) = \alpha\,\operatorname{mean}\big\|\mu_\omega(s, z) - \mathrm{sg}\,a_{\text{teacher}}(s, z)\big\|^2
      - \operatorname{mean} Q\big(s, \operatorname{clip}(\mu_\omega(s, z), -1, 1)\big),$$

    where the teacher's action comes from the *same* noise $z$ (FQL: the behaviour flow's
    ODE; QAM-FQL: the adjoint-matched flow's). The squared error is averaged over the action
    dimensions as well as the batch.

    **Arguments:**

    - `policy`: the one-step policy `(noise, cond) -> action` (e.g.
      [`interpolant_rl.nn.OneStepPolicy`][]).
    - `teacher_actions`: $a_{\text{teacher}}(s, z)$, shape `(batch, dim)` (no gradient taken).
    - `noise`: the $z$ shared with the teacher, shape `(batch, dim)`.
    - `observations`: the states, shape `(batch, obs_dim)`.
    - `q_function`: the batched critic.
    - `alpha`: the distillation weight $\alpha \ge 0$.
    - `normalise_q`: divide the Q term by $\mathrm{sg}(\operatorname{mean}|Q|)$ (see
      [`normalised_q_loss`][interpolant_rl.objectives.normalised_q_loss]).

    **Returns:** `(loss, metrics)`.
    """
    actions = jax.vmap(policy)(noise, observations)
    distillation = jnp.mean((actions - jax.lax.stop_gradient(teacher_actions)) ** 2)
    q = q_function(observations, jnp.clip(actions, -1.0, 1.0))
    q_loss = normalised_q_loss(q) if normalise_q else -jnp.mean(q)
    loss = alpha * distillation + q_loss
    return loss, dict(distillation_loss=distillation, q_loss=q_loss)


def bptt_q_loss(
    interpolant: AbstractInterpolant,
    velocity: VelocityField,
    noise: Float[Array, "batch dim"],
    observations: Float[Array, "batch obs_dim"],
    q_function: QFunction,
    *,
    num_steps: int = 10,
    solver: diffrax.AbstractSolver = diffrax.Euler(),
) -> Scalar:
    r"""FBRAC's value term, differentiated through the whole multi-step flow:

    $$\mathcal L_Q(\theta) = -\operatorname{mean} Q\big(s, \operatorname{clip}(\mathrm{ODE}_{v_\theta}(s, z), -1, 1)\big),$$

    with the ODE integrated by `solver` in `num_steps` steps inside one `lax.scan`, so reverse
    mode backpropagates through every step (the unstable gradient QAM avoids). Add it (scaled)
    to a behaviour-cloning loss such as
    [`flow_matching_loss`][interpolant_rl.objectives.flow_matching_loss].

    **Returns:** the scalar $\mathcal L_Q$.
    """
    process = ProbabilityFlowODE(interpolant, velocity)
    actions = jax.vmap(lambda z, c: sample(process, z, cond=c, solver=solver, num_steps=num_steps))(
        noise, observations
    )
    return -jnp.mean(q_function(observations, jnp.clip(actions, -1.0, 1.0)))


def td3_bc_loss(
    actions: Float[Array, "batch dim"],
    data_actions: Float[Array, "batch dim"],
    q_values: Float[Array, " batch"],
    alpha: ScalarLike,
    *,
    weights: Float[Array, " batch"] | None = None,
    reduction: str = "sum",
) -> tuple[Scalar, dict[str, Scalar]]:
    r"""The TD3+BC / ReBRAC actor loss of a deterministic policy $\pi$:

    $$\mathcal L = -\frac{\operatorname{mean} Q(s, \pi(s))}{\mathrm{sg}\,\operatorname{mean}|Q(s, \pi(s))|}
      + \alpha\,\operatorname{mean}_i \|\pi(s_i) - a_i\|^2,$$

    the behaviour-cloning term summed over action dimensions (`reduction="sum"`, as ReBRAC does)
    or averaged over them (`"mean"`, TD3+BC's `mse_loss`: $\|\cdot\|^2 / d$), and averaged over
    the batch with optional validity `weights`. TD3+BC's own form,
    $-\lambda\operatorname{mean}Q + \mathrm{MSE}$ with $\lambda = \alpha_{\text{TD3+BC}} /
    \mathrm{sg}\operatorname{mean}|Q|$, is this loss times $\alpha_{\text{TD3+BC}}$ with
    $\alpha = 1/\alpha_{\text{TD3+BC}}$ and `reduction="mean"`: the same minimiser, and the same
    Adam steps (Adam is invariant to a constant scale of the loss).

    **Arguments:** the policy's `actions` $\pi(s)$, the dataset's `data_actions` $a$, the critic's
    `q_values` at the policy's actions, the BC weight `alpha` $\ge 0$, `weights` and
    `reduction`.

    **Returns:** `(loss, metrics)`.
    """
    if reduction not in ("sum", "mean"):
        raise ValueError(f"reduction must be 'sum' or 'mean', got {reduction!r}")
    squared = (actions - data_actions) ** 2
    per_row = jnp.sum(squared, axis=-1) if reduction == "sum" else jnp.mean(squared, axis=-1)
    bc = weighted_mean(per_row, weights)
    q_loss = normalised_q_loss(q_values)
    return q_loss + alpha * bc, dict(bc_loss=bc, q_loss=q_loss)


def critic_bc_rewards(
    rewards: Float[Array, " batch"],
    masks: Float[Array, " batch"],
    next_actions: Float[Array, "batch dim"],
    next_data_actions: Float[Array, "batch dim"],
    alpha: ScalarLike,
    discount: ScalarLike,
    *,
    weights: Float[Array, " batch"] | None = None,
) -> Float[Array, " batch"]:
    r"""Rewards that turn an ordinary TD target into ReBRAC's behaviour-penalised one (its
    critic penalty, $\beta_2$ in the ReBRAC paper):

    $$\tilde r = r - \gamma\,m\,\alpha\,w\,\|a' - a'_{\mathcal D}\|^2,\qquad\text{so}\qquad
      \tilde r + \gamma\,m\,Q'(s', a') = r + \gamma\,m\big(Q'(s', a') - \alpha\,w\,\|a' - a'_{\mathcal D}\|^2\big),$$

    with $a'$ the target policy's (noised) action at $s'$, $a'_{\mathcal D}$ the data's action
    there, the squared error summed over action dimensions (as ReBRAC's), and $w$ the batch's
    `next_valid` weights: 0 where the data's next action is unknown (the episode ended), so the
    penalty is dropped there instead of comparing with another episode's action. The shift is the
    same for every ensemble member, so a pessimistic target keeps its form (as in
    [`soft_td_rewards`][interpolant_rl.objectives.soft_td_rewards]). For action chunks pass
    $\gamma^h$ as `discount`; $a'$ and $a'_{\mathcal D}$ are then whole chunks.

    **Arguments:** the batch's `rewards` and `masks`, the policy's `next_actions` $a'$, the
    data's `next_data_actions`, the weight `alpha` $\ge 0$, `discount` and `weights` (default:
    all ones). No gradient is taken.

    **Returns:** $\tilde r$, shape `(batch,)`.
    """
    squared = jnp.sum((next_actions - next_data_actions) ** 2, axis=-1)
    if weights is not None:
        squared = weights * squared
    shift = discount * masks * jnp.asarray(alpha) * squared
    return rewards - jax.lax.stop_gradient(shift)
