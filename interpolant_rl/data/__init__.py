"""Data: transition tables, action chunks and replay buffers (sampled inside `jit`)."""

from ._transitions import (
    chunk_batch as chunk_batch,
    mixed_batch as mixed_batch,
    ReplayBuffer as ReplayBuffer,
    sample_chunks as sample_chunks,
    Transitions as Transitions,
)
