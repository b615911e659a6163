"""Data: transition tables, action chunks and replay buffers (sampled inside `jit`), OGBench
datasets loaded from local files or generated with the oracles shipped in the `ogbench` wheel, and
Minari / D4RL-format datasets loaded from local paths, with D4RL's normalised scores."""

from ._batch import Batch as Batch
from ._d4rl_scores import (
    d4rl_environment as d4rl_environment,
    d4rl_normalized_score as d4rl_normalized_score,
    D4RL_REFERENCE_RETURNS as D4RL_REFERENCE_RETURNS,
)
from ._locomotion import (
    LOCOMOTION_ENV_IDS as LOCOMOTION_ENV_IDS,
    make_locomotion_env as make_locomotion_env,
    parse_locomotion_name as parse_locomotion_name,
)
from ._locomotion_datasets import (
    behaviour_fingerprint as behaviour_fingerprint,
    BehaviourIndex as BehaviourIndex,
    BehaviourSnapshot as BehaviourSnapshot,
    default_d4rl_dir as default_d4rl_dir,
    episode_scores as episode_scores,
    generate_locomotion_dataset as generate_locomotion_dataset,
    load_behaviour_policy as load_behaviour_policy,
    load_locomotion as load_locomotion,
    measure_behaviour_policy as measure_behaviour_policy,
    read_behaviour_index as read_behaviour_index,
    rollouts as rollouts,
    ship_behaviour_policies as ship_behaviour_policies,
    SHIPPED_BEHAVIOUR_DIR as SHIPPED_BEHAVIOUR_DIR,
    shipped_behaviour_envs as shipped_behaviour_envs,
)
from ._minari import (
    load_d4rl as load_d4rl,
    load_minari as load_minari,
    minari_environment as minari_environment,
)
from ._ogbench_generate import (
    default_cache_dir as default_cache_dir,
    generate_dataset as generate_dataset,
    generate_episode as generate_episode,
    GenerationSpec as GenerationSpec,
)
from ._ogbench_load import (
    load_ogbench as load_ogbench,
    parse_singletask_name as parse_singletask_name,
    validate_ogbench_file as validate_ogbench_file,
)
from ._transitions import (
    chunk_batch as chunk_batch,
    mixed_batch as mixed_batch,
    ReplayBuffer as ReplayBuffer,
    sample_chunks as sample_chunks,
    Transitions as Transitions,
)
