"""Data: transition tables, action chunks and replay buffers (sampled inside `jit`), and OGBench
datasets loaded from local files or generated with the oracles shipped in the `ogbench` wheel."""

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
