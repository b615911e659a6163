"""Policy export: the exported acting function equals `agent.act` bit for bit, loads without the
agents or Equinox, and refuses bad files and bad inputs with one-line errors."""

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

import interpolant_rl as ir
from interpolant_rl import agents


OBS_DIM, ACTION_DIM = 3, 2
# a flow policy integrated over a fixed grid (QAM), a one-step policy (FQL), a tanh-Gaussian
# (RLPD) and a behaviour-cloned flow without a critic (BC)
AGENTS = ("qam", "fql", "rlpd", "bc")
EXPORT_PY = Path(ir.__file__).with_name("_export.py")


def tiny_agent(name):
    config = agents.resize(agents.default_config(name), width=16, depth=1, num_critics=2)
    if hasattr(config, "flow_steps"):
        config = dataclasses.replace(config, flow_steps=4)
    return agents.make_agent(name, OBS_DIM, ACTION_DIM, jr.key(0), config), config


def inputs():
    """Single observations and batches of several sizes, each with its own key."""
    cases = []
    for i, shape in enumerate([(OBS_DIM,), (OBS_DIM,), (1, OBS_DIM), (5, OBS_DIM), (64, OBS_DIM)]):
        cases.append((np.asarray(jr.normal(jr.key(10 + i), shape)), jr.key(100 + i)))
    return cases


@pytest.fixture(scope="module", params=AGENTS)
def exported(request, tmp_path_factory):
    agent, config = tiny_agent(request.param)
    path = tmp_path_factory.mktemp(request.param) / "policy.jaxpolicy"
    header = ir.export_policy(agent, path, obs_dim=OBS_DIM, name=request.param, config=config)
    return request.param, agent, path, header


def test_exported_actions_equal_act_bit_for_bit(exported):
    name, agent, path, header = exported
    assert header["name"] == name and header["obs_dim"] == OBS_DIM
    assert header["action_dim"] == ACTION_DIM
    assert header["platforms"] == ["cpu", "cuda"]
    assert header["key"] == dict(
        impl="threefry2x32", format="raw key data", dtype="uint32", shape=[2]
    )
    policy = ir.load_policy(path)
    for observations, key in inputs():
        expected = np.asarray(agent.act(observations, key))
        raw = np.asarray(policy(observations, jr.key_data(key)))
        typed = np.asarray(policy(observations, key))
        assert raw.shape == expected.shape == observations.shape[:-1] + (ACTION_DIM,)
        np.testing.assert_array_equal(raw, expected, err_msg=name)
        np.testing.assert_array_equal(typed, expected, err_msg=name)
    # old-style raw keys (jax.random.PRNGKey) are the same key data
    observations = np.ones((2, OBS_DIM), np.float64)  # cast to float32, as `act` does
    np.testing.assert_array_equal(
        policy(observations, jr.PRNGKey(7)), agent.act(observations, jr.key(7))
    )


LOADER = """
import sys, importlib.util
import numpy as np
spec = importlib.util.spec_from_file_location("policy_loader", sys.argv[1])
loader = importlib.util.module_from_spec(spec)
spec.loader.exec_module(loader)
policy = loader.load_policy(sys.argv[2])
cases = np.load(sys.argv[3])
actions = [np.asarray(policy(cases[f"obs{i}"], cases[f"key{i}"])) for i in range(len(cases) // 2)]
np.savez(sys.argv[4], *actions)
loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("equinox", "interpolant_rl"))
assert not loaded, loaded
print("ok", policy.header["name"])
"""


def test_loader_needs_neither_equinox_nor_the_agents(exported, tmp_path):
    name, agent, path, _ = exported
    cases = inputs()
    np.savez(
        tmp_path / "cases.npz",
        **{f"obs{i}": obs for i, (obs, _) in enumerate(cases)},
        **{f"key{i}": np.asarray(jr.key_data(key)) for i, (_, key) in enumerate(cases)},
    )
    out = tmp_path / "actions.npz"
    result = subprocess.run(
        [sys.executable, "-c", LOADER, EXPORT_PY, path, tmp_path / "cases.npz", out],
        capture_output=True,
        text=True,
        timeout=300,
        env={"JAX_PLATFORMS": "cpu", "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == f"ok {name}"
    actions = np.load(out)
    for i, (observations, key) in enumerate(cases):
        np.testing.assert_array_equal(actions[f"arr_{i}"], agent.act(observations, key))


def one_line_error(function, *args):
    with pytest.raises(ValueError) as info:
        function(*args)
    message = str(info.value)
    assert "\n" not in message, message
    return message


@pytest.fixture(scope="module")
def fql_export(tmp_path_factory):
    agent, _ = tiny_agent("fql")
    path = tmp_path_factory.mktemp("cpu") / "policy.jaxpolicy"
    header = ir.export_policy(agent, path, obs_dim=OBS_DIM, platforms=("cpu",))
    return agent, path, header


def test_bad_files_are_refused(fql_export, tmp_path):
    _, path, _ = fql_export
    data = path.read_bytes()
    line, _, payload = data.partition(b"\n")
    header = json.loads(line)

    missing = tmp_path / "missing.jaxpolicy"
    assert "cannot read the policy file" in one_line_error(ir.load_policy, missing)

    for junk in (b"", b"hello\n", b"\x00\xff" * 50, b'{"format": "other"}\n'):
        (tmp_path / "junk").write_bytes(junk)
        message = one_line_error(ir.load_policy, tmp_path / "junk")
        assert "not an interpolant_rl policy export" in message

    newer = dict(header, format_version=2)
    (tmp_path / "newer").write_bytes(json.dumps(newer).encode() + b"\n" + payload)
    message = one_line_error(ir.load_policy, tmp_path / "newer")
    assert "format version 2, this loader reads version 1" in message

    (tmp_path / "short").write_bytes(data[:-10])
    assert "truncated" in one_line_error(ir.load_policy, tmp_path / "short")

    damaged = bytearray(data)
    damaged[len(line) + 1 + len(payload) // 2] ^= 0xFF
    (tmp_path / "damaged").write_bytes(bytes(damaged))
    assert "damaged policy export" in one_line_error(ir.load_policy, tmp_path / "damaged")


def test_bad_inputs_are_refused(fql_export):
    _, path, _ = fql_export
    policy = ir.load_policy(path)
    key = jr.key_data(jr.key(0))
    for shape in [(OBS_DIM + 1,), (2, OBS_DIM + 1), (2, 2, OBS_DIM), (0, OBS_DIM), ()]:
        message = one_line_error(policy, jnp.zeros(shape), key)
        assert f"observations of shape {shape}" in message
    message = one_line_error(policy, jnp.zeros(OBS_DIM), jnp.zeros(3, jnp.uint32))
    assert "takes raw key data, uint32 of shape (2,)" in message
    message = one_line_error(policy, jnp.zeros(OBS_DIM), jr.key(0, impl="rbg"))
    assert "exported for threefry2x32 keys" in message


def test_export_checks_its_arguments(tmp_path):
    with pytest.raises(TypeError, match="needs an AbstractAgent"):
        ir.export_policy(object(), tmp_path / "p", obs_dim=OBS_DIM)
    agent, _ = tiny_agent("fql")
    with pytest.raises(ValueError, match="obs_dim must be >= 1"):
        ir.export_policy(agent, tmp_path / "p", obs_dim=0)
    assert not (tmp_path / "p").exists()


def test_cpu_only_export(fql_export):
    agent, path, header = fql_export
    assert header["platforms"] == ["cpu"] and header["config"] is None
    observations = jr.normal(jr.key(1), (4, OBS_DIM))
    np.testing.assert_array_equal(
        ir.load_policy(path)(observations, jr.PRNGKey(2)),
        agent.act(observations, jr.key(2)),
    )
    assert repr(ir.load_policy(path)).startswith("LoadedPolicy(name=None, obs_dim=3")


def test_ddpm_sampling_is_bit_for_bit_with_a_static_cpu_program(tmp_path):
    # `agent.act` folds the DDPM schedule into host-computed constants; a symbolic batch or a
    # multi-platform program computes it at run time (last-bit differences). A static batch on
    # the CPU alone is the program `agent.act` compiles.
    agent, _ = tiny_agent("diffusion_bc")
    observations = np.asarray(jr.normal(jr.key(1), (5, OBS_DIM)))
    expected = np.asarray(agent.act(observations, jr.key(2)))
    cpu = dict(obs_dim=OBS_DIM, platforms=("cpu",))
    header = ir.export_policy(agent, tmp_path / "five", batch_size=5, **cpu)
    assert header["batch_size"] == 5 and header["batch"].startswith("static")
    five = ir.load_policy(tmp_path / "five")
    np.testing.assert_array_equal(five(observations, jr.PRNGKey(2)), expected)
    message = one_line_error(five, observations[:3], jr.PRNGKey(2))
    assert message == f"observations of shape (3, {OBS_DIM}): this policy takes (5, {OBS_DIM})"
    one_line_error(five, observations[0], jr.PRNGKey(2))  # a single one is not a batch of 5
    ir.export_policy(agent, tmp_path / "one", batch_size=1, **cpu)
    one = ir.load_policy(tmp_path / "one")
    np.testing.assert_array_equal(
        one(observations[0], jr.PRNGKey(3)), agent.act(observations[0], jr.key(3))
    )
    ir.export_policy(agent, tmp_path / "any", obs_dim=OBS_DIM)  # symbolic batch, cpu and cuda
    symbolic = ir.load_policy(tmp_path / "any")(observations, jr.PRNGKey(2))
    np.testing.assert_allclose(symbolic, expected, rtol=0, atol=1e-6)
