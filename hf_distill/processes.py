"""Ending a multi-process run cleanly: every rank waits for the others, then the process group is destroyed.

Why a script needs this. Under `accelerate launch --num_processes N` the ranks reach the end of a script at different
times: rank 0 still measures latency, writes `results.json` and the model card, and pushes to the Hub, while the
others have nothing left to do. A rank that exits while its gloo process group is alive can abort in interpreter
finalisation (`terminate called without an active exception`, SIGABRT): gloo's worker threads still hold work
objects whose destruction needs the GIL of an interpreter being torn down (pytorch/pytorch#179291 describes the
mechanism; torch does not destroy the group at exit for you). The elastic agent then sends SIGTERM to the ranks still
running, rank 0 among them, and the run's results are lost after the training was paid for.

Where it belongs. In the script, not in the trainer: `DistillationTrainer.train()` returns to a script that may still
need the process group (to evaluate, save, or train again), so the library never tears it down by itself. A script
wraps its `main()` in :func:`end_processes_together`, which is the one place this is done:

```python
if __name__ == "__main__":
    with end_processes_together():
        main()
```
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch.distributed as dist
from transformers.utils import logging

logger = logging.get_logger(__name__)


def destroy_process_group() -> bool:
    """Destroy the default process group if one is initialised; returns whether one was."""
    if not (dist.is_available() and dist.is_initialized()):
        return False
    dist.destroy_process_group()
    return True


@contextmanager
def end_processes_together() -> Iterator[None]:
    """Run the body, then let every rank leave only after all of them finished, and destroy the process group.

    On success, the ranks meet at a barrier placed after the main process's last write (the report, the card, the
    push), so no rank can exit, and abort, while another still works; then each destroys its process group before
    the interpreter shuts down. When the body raises, the group is destroyed without the barrier (the other ranks
    would wait for a rank that has failed) and the exception propagates, so the launcher reports the real error.
    Without a process group (a single process) this does nothing.
    """
    try:
        yield
    except BaseException:
        destroy_process_group()
        raise
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        destroy_process_group()
