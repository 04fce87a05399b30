"""One process of a data-parallel fit on the tiny fixtures, started by torchrun from tests/test_distributed.py.

    python -m torch.distributed.run --standalone --nproc-per-node 2 tests/distributed_worker.py FOLDER

FOLDER holds ``inputs.pt`` (the class means of the tiny generator, written by the test),
``target.safetensors`` (the tiny target) and ``fit.json`` (the attack's keyword arguments). Every
rank fits targets 2 and 7 together with
:class:`~atgan_plugin.attack.distributed.DataParallelATGANAttack` and writes a digest of its G_attack
parameters to ``rank<r>.json``; rank 0 also saves the fits (``fit<t>.safetensors``).
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from conftest import ClassMeanGenerator  # noqa: E402

from atgan_plugin.attack.distributed import DataParallelATGANAttack, init  # noqa: E402
from atgan_plugin.models import load_classifier  # noqa: E402


def main() -> None:
    folder = Path(sys.argv[1])
    group = init("cpu")
    assert group is not None, "start me with torchrun"
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        generator = ClassMeanGenerator(torch.load(folder / "inputs.pt")["class_means"]).eval()
    model = load_classifier(folder / "target.safetensors", device="cpu").eval()
    fit = json.loads((folder / "fit.json").read_text())
    attack = DataParallelATGANAttack(model, generator=generator, distributed=group, progress=False, **fit)
    fits = attack.fit(targets=[2, 7])
    digest = hashlib.sha256()
    for target in (2, 7):
        for p in fits[target].generator.parameters():
            digest.update(p.detach().numpy().tobytes())
    (folder / f"rank{group.rank}.json").write_text(
        json.dumps({"digest": digest.hexdigest(), "config": fits[2].config.batch_size})
    )
    if group.is_main:
        for target in (2, 7):
            attack.save_fit(folder / f"fit{target}.safetensors", target=target)
    group.shutdown()


if __name__ == "__main__":
    main()
