"""Fork server for ``tests/test_fuzz_loaders.py``: loads each file it is sent in a fresh child process.

Run as a script (``python tests/fuzz_worker.py``); it imports the loaders once, then for every
request line ``{"loader": ..., "path": ...}`` on stdin forks a child that sets an address-space
limit (:data:`ADDRESS_SPACE`) and an alarm (:data:`SECONDS`), loads the file and reports on
stdout, as one JSON line, how the load ended:

- ``named``: a ``CheckpointError`` (with its message);
- ``loaded``: the network, with digests of its architecture (names and shapes) and weights and
  whether every weight is finite;
- ``other``: any other exception (type, message and the last traceback lines);
- ``crash`` / ``timeout``: the child died of a signal, or of the alarm.

Each reply also gives the child's wall time and peak resident memory. One child per file, so
nothing a file does to the process can reach the next one.
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import signal
import sys
import time
import traceback
import warnings
from typing import Any

import torch

from atgan_plugin.adapters import load_generator
from atgan_plugin.checkpoints import CheckpointError, tensor_digest
from atgan_plugin.models import load_classifier
from atgan_plugin.vendored.stylegan2_ada.snapshot import load_generator_pickle

ADDRESS_SPACE = 6 << 30  # bytes of virtual memory a child may map (raised above what the imports hold)
SECONDS = 30  # wall time a child may take

LOADERS = {"generator": load_generator, "classifier": load_classifier, "pickle": load_generator_pickle}


def _address_space() -> int:
    with open("/proc/self/status") as status:
        mapped = next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmSize"))
    return max(ADDRESS_SPACE, mapped + (1 << 30))  # CUDA wheels map a few GB before any work


def _outcome(loader: str, path: str) -> dict[str, Any]:
    try:
        module = LOADERS[loader](path)
    except CheckpointError as error:
        return {"outcome": "named", "type": type(error).__name__, "message": str(error)[:400]}
    except BaseException as error:  # noqa: BLE001 (what the fuzz is looking for)
        lines = traceback.format_exception(error)[-4:]
        return {
            "outcome": "other",
            "type": type(error).__name__,
            "message": str(error)[:400],
            "traceback": "".join(lines)[-1500:],
        }
    state = {name: tensor.detach() for name, tensor in module.state_dict().items()}
    architecture = ",".join(f"{name}{tuple(t.shape)}" for name, t in sorted(state.items()))
    return {
        "outcome": "loaded",
        "architecture": hashlib.sha256(architecture.encode()).hexdigest(),
        "weights": tensor_digest({name: t.float() for name, t in state.items()}),
        "finite": all(bool(torch.isfinite(t).all()) for t in state.values() if t.is_floating_point()),
    }


def _child(loader: str, path: str, out: int) -> None:
    limit = _address_space()
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    signal.alarm(SECONDS)  # the default action ends the process: reported as a timeout
    warnings.simplefilter("ignore")  # hashless files warn; the outcome is what counts
    result = _outcome(loader, path)
    os.write(out, json.dumps(result).encode())
    os._exit(0)


def main() -> None:
    torch.set_num_threads(1)
    for line in sys.stdin:
        request = json.loads(line)
        read, write = os.pipe()
        start = time.perf_counter()
        pid = os.fork()
        if pid == 0:
            os.close(read)
            _child(request["loader"], request["path"], write)
        os.close(write)
        with os.fdopen(read, "rb") as pipe:
            payload = pipe.read()
        _, status, usage = os.wait4(pid, 0)
        seconds = time.perf_counter() - start
        if os.WIFSIGNALED(status):
            number = os.WTERMSIG(status)
            result: dict[str, Any] = {
                "outcome": "timeout" if number == signal.SIGALRM else "crash",
                "message": f"killed by {signal.Signals(number).name}",
            }
        elif not payload:
            result = {"outcome": "crash", "message": f"exited with status {os.WEXITSTATUS(status)} and no result"}
        else:
            result = json.loads(payload)
        result.update(seconds=round(seconds, 3), peak_rss_mb=round(usage.ru_maxrss / 1024, 1))
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
