"""Training: one driver for N >= 1 seeds (offline then online), evaluation, metrics logging,
resumable checkpoints and the run directory that holds them."""

from ._aggregates import (
    iqm as iqm,
    performance_profile as performance_profile,
    stratified_bootstrap_ci as stratified_bootstrap_ci,
)
from ._behaviour import (
    behaviour_run_dir as behaviour_run_dir,
    MEDIUM_SCORES as MEDIUM_SCORES,
    SAC_CONFIG as SAC_CONFIG,
    train_behaviour_policy as train_behaviour_policy,
)
from ._checkpoint import (
    CheckpointError as CheckpointError,
    load_checkpoint as load_checkpoint,
    read_checkpoint_header as read_checkpoint_header,
    save_checkpoint as save_checkpoint,
)
from ._distributed import (
    barrier as barrier,
    gather_floats as gather_floats,
    initialize_distributed as initialize_distributed,
    process_block as process_block,
)
from ._logging import (
    MetricsLogger as MetricsLogger,
    read_rows as read_rows,
    WandbConfig as WandbConfig,
)
from ._loop import (
    evaluate as evaluate,
    evaluation_env as evaluation_env,
    evaluation_envs as evaluation_envs,
    make_agents as make_agents,
    NonFiniteLossError as NonFiniteLossError,
    select_members as select_members,
    select_seed as select_seed,
    train as train,
    train_seeds as train_seeds,
    TrainConfig as TrainConfig,
)
from ._presets import AGENT_PRESETS as AGENT_PRESETS, preset as preset, PRESETS as PRESETS
from ._run_dir import RunDirectory as RunDirectory
from ._sharding import seed_sharding as seed_sharding
from ._sweep import (
    float_fields as float_fields,
    make_sweep as make_sweep,
    parse_sweep as parse_sweep,
    sweep_grid as sweep_grid,
    SweepMember as SweepMember,
    with_value as with_value,
)
