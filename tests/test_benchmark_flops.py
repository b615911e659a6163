"""`benchmarks/_flops.py` counts matmul FLOPs exactly on functions whose count is known."""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr

from benchmarks._flops import count_matmul_flops as count


M, K, N, B, STEPS = 6, 5, 4, 3, 10


def test_matmul_is_2mnk():
    a, b = jnp.ones((M, K)), jnp.ones((K, N))
    result = count(jnp.dot, a, b)
    assert result.flops == 2 * M * K * N
    assert result.dot_generals == 1 and result.bounded


def test_batched_and_transposed_contractions():
    a, b = jnp.ones((B, M, K)), jnp.ones((B, N, K))
    assert count(lambda a, b: jnp.einsum("bmk,bnk->bmn", a, b), a, b).flops == 2 * B * M * N * K

    # an outer product as a dot_general without contraction (as reverse mode emits them)
    def outer(u, v):
        return jax.lax.dot_general(u, v, (((), ()), ((), ())))

    assert count(outer, jnp.ones(M), jnp.ones(N)).flops == 2 * M * N


def test_vmap_multiplies_by_the_batch():
    w, xs = jnp.ones((N, K)), jnp.ones((B, K))
    assert count(jax.vmap(lambda x: w @ x), xs).flops == B * 2 * N * K


def test_scan_multiplies_by_its_length_where_xla_counts_the_body_once():
    w, x = jnp.ones((K, K)), jnp.ones(K)

    def f(w, x):
        return jax.lax.scan(lambda c, _: (jnp.tanh(w @ c), None), x, None, length=STEPS)[0]

    assert count(f, w, x).flops == STEPS * 2 * K * K

    def nested(w, x):
        return jax.lax.scan(lambda c, _: (f(w, c), None), x, None, length=3)[0]

    assert count(nested, w, x).flops == 3 * STEPS * 2 * K * K
    # the reason this module exists (update the docstrings if XLA ever counts trip counts)
    xla = jax.jit(f).lower(w, x).compile().cost_analysis()
    xla = xla[0] if isinstance(xla, list) else xla
    assert xla["flops"] < 2 * (2 * K * K + 2 * K), xla["flops"]


def test_calls_remat_and_custom_rules_are_counted_once():
    w, x = jnp.ones((N, K)), jnp.ones(K)

    @jax.custom_jvp
    def custom(w, x):
        return w @ x

    @custom.defjvp
    def _(primals, tangents):
        (w, x), (dw, dx) = primals, tangents
        return custom(w, x), dw @ x + w @ dx

    def f(w, x):
        inner = jax.jit(lambda w, x: w @ x)(w, x)
        checkpointed = jax.checkpoint(lambda w, x: w @ x)(w, x)
        return inner + checkpointed + custom(w, x)

    assert count(f, w, x).flops == 3 * 2 * N * K


def test_cond_takes_the_most_expensive_branch():
    w, x = jnp.ones((K, K)), jnp.ones(K)

    def f(p, w, x):
        return jax.lax.cond(p, lambda x: w @ (w @ x), lambda x: w @ x, x)

    assert count(f, jnp.array(True), w, x).flops == 2 * 2 * K * K


def test_while_loops_are_flagged_as_unbounded():
    w, x = jnp.ones((K, K)), jnp.ones(K)

    def f(w, x):
        return jax.lax.fori_loop(0, jnp.int32(STEPS) * jnp.int32(x[0] > 0), lambda i, c: w @ c, x)

    result = count(f, w, x)
    assert result.while_loops == 1 and not result.bounded
    assert result.flops == 2 * K * K  # the body once: a lower bound


def test_grad_of_an_mlp_is_about_three_forwards():
    sizes = [7, 32, 32, 1]
    mlp = eqx.nn.MLP(sizes[0], sizes[-1], sizes[1], len(sizes) - 2, key=jr.key(0))
    xs = jnp.ones((B, sizes[0]))
    layer = [2 * B * d_in * d_out for d_in, d_out in zip(sizes[:-1], sizes[1:], strict=True)]

    def loss(mlp, xs):
        return jnp.sum(jax.vmap(mlp)(xs) ** 2)

    forward = count(loss, mlp, xs).flops
    assert forward == sum(layer)
    grad = count(eqx.filter_grad(loss), mlp, xs).flops
    # forward + weight gradients + input gradients of every layer but the first
    assert grad == 3 * sum(layer) - layer[0]
    assert 2.5 < grad / forward <= 3.0
