"""``finish_distributed``: how every entry point ends a DDP process (``segattack.cli``)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

SCRIPT = """
import os
import sys
from pathlib import Path
import torch.distributed as dist
from segattack.cli import finish_distributed

dist.init_process_group("gloo")
finish_distributed()
# only rank 0 gets here: a child rank has ended inside finish_distributed
assert not dist.is_initialized()
Path(sys.argv[1], "after_" + os.environ["RANK"]).write_text("ok")
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_child_ranks_end_in_finish_distributed_and_rank_zero_goes_on(tmp_path: Path):
    env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port()),
           "WORLD_SIZE": "2", "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, "-c", SCRIPT, str(tmp_path)],
                              env={**env, "RANK": str(rank)}, stderr=subprocess.PIPE, text=True)
             for rank in (0, 1)]
    errors = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errors
    assert sorted(f.name for f in tmp_path.iterdir()) == ["after_0"]  # rank 1 wrote nothing
