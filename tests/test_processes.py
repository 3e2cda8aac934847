"""`end_processes_together`: ranks leave after the main process's last write, and the process group is destroyed."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap

import pytest
import torch.distributed as dist

from hf_distill import end_processes_together

from .conftest import REPO_ROOT

SCRIPT = textwrap.dedent(
    """
    import json, sys, time
    import torch.distributed as dist
    sys.path.insert(0, {root!r})
    from hf_distill import end_processes_together

    output_dir = sys.argv[1]
    dist.init_process_group("gloo")
    rank = dist.get_rank()

    def main():
        if rank == 0:
            time.sleep(2.0)  # rank 0's post-training work: latency, report, card, push
            with open(f"{{output_dir}}/report.json", "w") as f:
                json.dump({{"written": time.time()}}, f)

    with end_processes_together():
        main()
    with open(f"{{output_dir}}/exit_{{rank}}.json", "w") as f:
        json.dump({{"left": time.time(), "initialized": dist.is_initialized()}}, f)
    """
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_no_rank_leaves_before_the_main_process_has_written_its_results(tmp_path):
    """A rank that exits while rank 0 still writes `results.json` can abort in gloo's teardown, and the launcher then
    kills rank 0 with the results unwritten. Rank 1 must leave the block only after rank 0's last write, and both
    must have destroyed their process group before the interpreter shuts down."""
    script = tmp_path / "run.py"
    script.write_text(SCRIPT.format(root=str(REPO_ROOT)))
    port = str(_free_port())
    processes = []
    for rank in (0, 1):
        env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port, "RANK": str(rank), "WORLD_SIZE": "2"}
        processes.append(
            subprocess.Popen([sys.executable, str(script), str(tmp_path)], env=env, stderr=subprocess.PIPE, text=True)
        )
    for process in processes:
        _, stderr = process.communicate(timeout=300)
        assert process.returncode == 0, stderr[-3000:]
    written = json.loads((tmp_path / "report.json").read_text())["written"]
    for rank in (0, 1):
        record = json.loads((tmp_path / f"exit_{rank}.json").read_text())
        assert record["left"] >= written, f"rank {rank} left before rank 0 wrote its report"
        assert record["initialized"] is False, f"rank {rank} exited with its process group alive"


def test_a_failing_body_destroys_the_group_and_keeps_its_error():
    """On an error the helper must not wait at a barrier for ranks that will never arrive, nor hide the user's
    exception behind a teardown error; the group must still be destroyed."""
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    try:
        with pytest.raises(RuntimeError, match="the user's own error"):
            with end_processes_together():
                raise RuntimeError("the user's own error")
        assert not dist.is_initialized()
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def test_a_single_process_run_is_left_alone():
    """Without a process group the helper must do nothing (and not fail): most runs are one process."""
    assert not dist.is_initialized()
    with end_processes_together():
        pass
    assert not dist.is_initialized()
