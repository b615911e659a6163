"""Training: offline then online loops, evaluation, metrics logging and resumable checkpoints."""

from ._checkpoint import (
    load_checkpoint as load_checkpoint,
    read_checkpoint_header as read_checkpoint_header,
    save_checkpoint as save_checkpoint,
)
from ._logging import MetricsLogger as MetricsLogger
from ._loop import (
    evaluate as evaluate,
    evaluation_env as evaluation_env,
    NonFiniteLossError as NonFiniteLossError,
    train as train,
    TrainConfig as TrainConfig,
)
from ._seeds import (
    make_agents as make_agents,
    seed_sharding as seed_sharding,
    select_seed as select_seed,
    train_seeds as train_seeds,
)
