"""The item set of a human evaluation: which images the raters judge, made once per run folder.

Paper (appendix D.4, Table 10): the same inputs ``(z, y)`` through G_orig and G_attack, a fixed
number per class, judged "realistic or not" by people. Our choice: the set is drawn from a seed,
stored in ``RUN_DIR/human-eval/`` (``items.json`` and one PNG per item), and every rater judges the
same items, each in an own shuffled order. Real test images may be mixed in as a control.

An item's provenance (``source``: ``"orig"``, ``"attack"`` or ``"real"``) lives in ``items.json``
only; the page is shown an opaque id, the class and the image, never the source.
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from atgan_plugin import runs
from atgan_plugin.runs import RunFolderError

__all__ = ["SOURCES", "Item", "ItemSet", "RunFolderError", "build_items", "describe", "load_items", "order_for"]

SOURCES = ("orig", "attack", "real")
_FORMAT = 1  # version of items.json
_ID = re.compile(r"[0-9a-f]{12}")
_SETTINGS = {"seed": -(2**63), "per_class": 1, "real_control": 0}  # required integers and their least value


@dataclass(frozen=True)
class Item:
    id: str  # opaque: the page sees this, the class and the image, nothing else
    cls: int
    source: str  # "orig" (G_orig), "attack" (G_attack) or "real" (a test image)
    pair: int | None  # the (z, y) index shared by an "orig" and an "attack" item
    image: str  # relative to the human-eval folder


@dataclass(frozen=True)
class ItemSet:
    folder: Path  # RUN_DIR/human-eval
    items: tuple[Item, ...]
    class_names: tuple[str, ...]
    settings: dict[str, Any]  # seed, per_class, real_control, dataset, fit, target, generator

    @cached_property
    def index(self) -> dict[str, Item]:
        """The items by id."""
        return {item.id: item for item in self.items}


def order_for(items: ItemSet, rater: str) -> list[str]:
    """The rater's own order of the item ids: shuffled from (seed, rater), the same on every visit."""
    ids = sorted(item.id for item in items.items)
    random.Random(f"{items.settings['seed']}/{rater}").shuffle(ids)
    return ids


def _problem(data: Any) -> str | None:
    """What makes decoded ``items.json`` content unusable, in words (None: nothing)."""
    if not isinstance(data, dict) or data.get("format") != _FORMAT:
        return f"not an item set of format {_FORMAT} (a JSON object with 'format': {_FORMAT})"
    names, settings, records = data.get("class_names"), data.get("settings"), data.get("items")
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        return "'class_names' must be a non-empty list of strings"
    if not isinstance(settings, dict):
        return "'settings' must be an object"
    for key, low in _SETTINGS.items():
        value = settings.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            return f"settings.{key} must be an integer >= {low}, got {value!r}"
    if not isinstance(records, list) or not records:
        return "'items' must be a non-empty list"
    seen: set[str] = set()
    for record in records:
        problem = _item_problem(record, len(names))
        if problem is None and record["id"] in seen:
            problem = "is listed twice"
        if problem is not None:
            return f"item {record.get('id') if isinstance(record, dict) else record!r} {problem}"
        seen.add(record["id"])
    return None


def _item_problem(record: Any, num_classes: int) -> str | None:
    if not isinstance(record, dict):
        return "is not an object"
    cls, pair, image = record.get("class"), record.get("pair"), record.get("image")
    if not isinstance(record.get("id"), str) or not _ID.fullmatch(record["id"]):
        return "has no id of 12 hex digits"
    if isinstance(cls, bool) or not isinstance(cls, int) or not 0 <= cls < num_classes:
        return f"has class {cls!r}, not one of the {num_classes} classes"
    if record.get("source") not in SOURCES:
        return f"has source {record.get('source')!r}, not one of {list(SOURCES)}"
    if pair is not None and (isinstance(pair, bool) or not isinstance(pair, int) or pair < 0):
        return f"has pair {pair!r}, not null or an index"
    if not isinstance(image, str) or not image.startswith("images/"):
        return f"has image {image!r}, not a file under images/"
    return None


def load_items(folder: Path) -> ItemSet | None:
    """The item set stored in ``folder`` (``RUN_DIR/human-eval``), or ``None`` when none was made yet.

    Every value is checked (classes, sources, ids, settings; image paths stay inside the run folder),
    so that a damaged or tampered ``items.json`` is a :class:`RunFolderError` naming the problem."""
    path = folder / "items.json"
    if not path.is_file() and not path.is_symlink():
        return None
    fix = "; remove the folder to make a new one"
    try:
        runs.path_inside(folder.parent, f"{folder.name}/items.json", "items.json")
        data = json.loads(path.read_text())
    except (OSError, ValueError, RecursionError) as error:
        raise RunFolderError(f"{path} is not an item set written by atgan human-eval ({error}){fix}") from error
    problem = _problem(data)
    if problem is None:
        for record in data["items"]:
            try:
                runs.path_inside(folder, record["image"], f"the image of item {record['id']}")
            except RunFolderError as error:
                problem = str(error)
                break
    if problem is not None:
        raise RunFolderError(f"{path} is not a usable item set: {problem}{fix}")
    items = tuple(Item(d["id"], d["class"], d["source"], d["pair"], d["image"]) for d in data["items"])
    return ItemSet(folder, items, tuple(data["class_names"]), dict(data["settings"]))


def _save_png(image: torch.Tensor, path: Path) -> None:
    """``image`` ``(C, H, W)`` in [0, 1] as an 8-bit PNG (grey for one channel)."""
    array = (image.clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()
    array = array[0] if array.shape[0] == 1 else np.transpose(array, (1, 2, 0))
    Image.fromarray(array).save(path, format="PNG")


def _run_networks(run_dir: Path, fit_path: Path | None, device: torch.device) -> tuple[Any, Any, Any, dict[str, str]]:
    """The run's generator, target model and fitted attack, from its ``options.json`` and fit file."""
    from atgan_plugin.adapters import load_generator
    from atgan_plugin.attack.atgan import ATGANAttack
    from atgan_plugin.models import load_classifier

    options_path = run_dir / "options.json"
    if not run_dir.is_dir():
        raise RunFolderError(f"no run folder {run_dir}")
    if not options_path.is_file():
        raise RunFolderError(f"{run_dir} is not a run folder of atgan demo, evaluate or attack (no options.json)")
    checkpoints = json.loads(options_path.read_text()).get("checkpoints", {})
    missing = [name for name in ("generator", "model") if name not in checkpoints]
    if missing:
        raise RunFolderError(
            f"{options_path} names no {' and no '.join(missing)} checkpoint (made by atgan demo, evaluate or attack?)"
        )
    if fit_path is None:
        candidates = [run_dir / "g_attack.safetensors", *([Path(checkpoints["fit"])] if "fit" in checkpoints else [])]
        fit_path = next((path for path in candidates if path.is_file()), None)
        if fit_path is None:
            raise RunFolderError(
                f"{run_dir} holds no fitted G_attack (looked for {', '.join(map(str, candidates))}); pass --fit"
            )
    generator = load_generator(checkpoints["generator"], device=device)
    model = load_classifier(checkpoints["model"], device=device)
    attack = ATGANAttack(model, generator=generator, device=device, progress=False)
    fit = attack.load_fit(fit_path)
    return attack, model, fit, {"generator": str(checkpoints["generator"]), "fit": str(fit_path)}


def build_items(
    run_dir: Path,
    *,
    per_class: int,
    real_control: int = 0,
    seed: int = 0,
    dataset: str = "fashion-mnist",
    data_dir: str | None = None,
    fit_path: Path | None = None,
    device: torch.device | str = "cpu",
) -> ItemSet:
    """Draws and stores the item set of ``run_dir``: for each source class, ``per_class`` latents
    through G_orig and G_attack, and ``real_control`` real test images of that class."""
    from atgan_plugin.data import DATASETS, load_dataset

    device = torch.device(device)
    attack, model, fit, paths = _run_networks(run_dir, fit_path, device)
    generator = attack.generator
    num_classes = int(generator.num_classes)
    names = DATASETS[dataset].class_names
    class_names = tuple(names) if len(names) == num_classes else tuple(f"class {k}" for k in range(num_classes))
    # A targeted fit has no images of its target class as source.
    classes = [k for k in range(num_classes) if k != fit.target]
    test = load_dataset(dataset, "test", data_dir) if real_control > 0 else None

    rng = torch.Generator().manual_seed(seed)
    id_rng = random.Random(seed)
    used: set[str] = set()

    def new_id() -> str:
        while (item_id := f"{id_rng.getrandbits(48):012x}") in used:
            pass
        used.add(item_id)
        return item_id

    folder = run_dir / "human-eval"
    (folder / "images").mkdir(parents=True, exist_ok=True)
    items: list[Item] = []
    pair = 0
    for k in classes:
        sources = torch.full((per_class,), k, dtype=torch.long, device=device)
        z = generator.sample_z(per_class, generator=rng, device=device)
        adversarial, reference = attack.generate(sources, target=fit.target, z=z, model=model, with_reference=True)
        for i in range(per_class):
            for source, image in (("orig", reference[i]), ("attack", adversarial[i])):
                item_id = new_id()
                item = Item(item_id, k, source, pair, f"images/{item_id}.png")
                _save_png(image, folder / item.image)
                items.append(item)
            pair += 1
        if test is not None:
            indices = (test.labels == k).nonzero().flatten()
            chosen = indices[torch.randperm(len(indices), generator=rng)[:real_control]]
            for index in chosen.tolist():
                item_id = new_id()
                item = Item(item_id, k, "real", None, f"images/{item_id}.png")
                _save_png(test.images[index], folder / item.image)
                items.append(item)

    settings = {
        "seed": seed,
        "per_class": per_class,
        "real_control": real_control,
        "dataset": dataset,
        "target": fit.target,
        **paths,
    }
    records = [
        {"id": it.id, "class": it.cls, "source": it.source, "pair": it.pair, "image": it.image}
        for it in sorted(items, key=lambda it: it.id)
    ]
    # items.json comes last: a set whose writing was cut short has none and is made again.
    runs.write_json(
        folder / "items.json",
        {"format": _FORMAT, "settings": settings, "class_names": list(class_names), "items": records},
    )
    return ItemSet(folder, tuple(items), class_names, settings)


def describe(items: ItemSet) -> str:
    counts = {source: sum(item.source == source for item in items.items) for source in SOURCES}
    parts = [f"{counts['orig']} G_orig", f"{counts['attack']} AT-GAN"] + (
        [f"{counts['real']} real"] if counts["real"] else []
    )
    per_class = items.settings["per_class"]
    return f"{len(items.items)} items ({', '.join(parts)}): {per_class} latents per class through each generator"
