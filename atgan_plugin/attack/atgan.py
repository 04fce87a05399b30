"""``ATGANAttack``: AT-GAN as a Foolbox attack and as an AdverTorch attack, in one class.

Paper: Wang et al., "AT-GAN: An Adversarial Generator Model for Non-constrained Adversarial
Examples" (arXiv:1904.07793). Threat model: non-constrained; the adversarial example is a new
image ``G_attack(z, y_s)`` of source class ``y_s``, not an Lp-bounded change of an input::

    attack = ATGANAttack(generator=G)                                   # Foolbox 3
    raw, clipped, success = attack(fmodel, images, labels, epsilons=None)
    adversary = ATGANAttack(model, generator=G, targeted=False, clip_min=0.0, clip_max=1.0)
    adv = adversary.perturb(x, y)                                       # AdverTorch, or adversary(x, y)
    paper = ATGANAttack(generator=G, config="paper")                    # the paper's attack

What the attack computes is one :class:`~atgan_plugin.attack.config.TransferConfig` (``config=``, a preset's
name or the object: the one place its settings and their defaults are documented); how it runs is
:class:`~atgan_plugin.attack.attack_options.AttackOptions` (``options=``).

Both faces (which labels are sources, which targets), the input checks and the latent modes
(``"random"``, the paper's; ``"invert"``, the adversarial twin of each input) come from
:class:`atgan_plugin.attack.generator_attack.GeneratorAttackBase`, shared with
:class:`atgan_plugin.paper.song.SongAttack`; this class adds the fit and its cache. A finite Foolbox
ε projects the output onto the ε-ball (``options.distance``, ℓ2 by default) around ``images``, as for every
minimization attack: meaningful with ``latent="invert"``; with ``"random"`` it blends two unrelated images.

Fitting ``G_attack`` is the expensive part: it happens on first use for each (model, target)
and is cached (:mod:`atgan_plugin.attack.fit_store`); ``fit()``, ``save_fit()`` and ``load_fit()``
make it explicit. A call with several targets (or ``fit(model, targets=[...])``) fits every missing
target in one run that shares the work (:mod:`atgan_plugin.attack.fit`).

Realism by default (our additions, each switchable): ``guard="auto"`` keeps the source class with
the generator's own guard classifiers plus one distilled from G_orig (:mod:`atgan_plugin.attack.guards`),
and the realistic preset shrinks each output towards G_orig's image as far as it still fools the model
(:mod:`atgan_plugin.attack.shrink`).

Shape:
    - inputs: ``(N, C, H, W)`` within the model's bounds, ``(C, H, W)`` = ``generator.image_shape``.
    - labels / targets: ``(N,)`` int64 in ``[0, generator.num_classes)``.
    - output: same shape, dtype and device as the inputs, within the bounds.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, cast, overload

import torch
from torch import nn

from atgan_plugin.adapters.protocol import as_generator_module
from atgan_plugin.adapters.resized import ResizedGenerator
from atgan_plugin.attack.attack_options import AttackOptions, resolve_config, split_keywords
from atgan_plugin.attack.attacked_model import torch_module_of
from atgan_plugin.attack.compiled import CompiledModules
from atgan_plugin.attack.config import TransferConfig
from atgan_plugin.attack.fit import FitResult, GradientSync, fit_attack_generators, fit_groups
from atgan_plugin.attack.fit_store import FitCache, fit_setting, read_fit, write_fit
from atgan_plugin.attack.generator_attack import GeneratorAttackBase
from atgan_plugin.attack.guards import AUTO, GuardSpec, check_guard_spec, describe_guard, resolve_guards
from atgan_plugin.attack.latent_checks import check_latents
from atgan_plugin.attack.precision import autocast
from atgan_plugin.attack.shrink import shrink_while_fooled
from atgan_plugin.utils import eval_mode, model_device

__all__ = ["ATGANAttack", "AttackOptions"]


class ATGANAttack(GeneratorAttackBase):
    """AT-GAN (see the module docstring for both faces).

    Args:
        model: the classifier for the AdverTorch face (images -> logits); leave out for Foolbox.
        generator: a :class:`~atgan_plugin.adapters.ConditionalGenerator` (G_orig); never modified.
        targeted: AdverTorch's flag: whether ``y`` in ``perturb(x, y)`` are targets.
        clip_min, clip_max: AdverTorch's input bounds (Foolbox uses ``fmodel.bounds``).
        config: what the attack computes: ``"realistic"`` (``None``, the default), ``"paper"``, or a
            :class:`~atgan_plugin.attack.config.TransferConfig` (e.g. ``TransferConfig.realistic(steps=2000)``).
        guard: classifiers of the generator's classes on images in [0, 1] that must keep recognising the
            source class during the fit (our addition; used when ``config.gamma > 0``). ``"auto"`` (default):
            the generator's own (``generator.default_guards``) plus a guard distilled from G_orig, trained on
            first use (:meth:`prepare_guard`) and cached; ``None``: none; or a classifier or a sequence of them,
            never the target model nor your realism judge. Copied, never modified.
        latent: ``"random"`` (paper) or ``"invert"``; see the module docstring.
        device: where to fit and generate; default: the model's device.
        seed: seeds the fit (it replaces ``config.seed``) and the latents, so a run is reproducible.
        progress: show progress bars (the fit, a guard's distillation).
        options: how the attack runs (:class:`~atgan_plugin.attack.attack_options.AttackOptions`).
        **deprecated: the keywords before release 0.2 (``alpha=``, ``steps=``, ``search_steps=``,
            ``precision=``, ...), each with a ``DeprecationWarning`` naming the new spelling.
    """

    _model_methods = "fit()/generate()"

    def __init__(
        self,
        model: Callable[[torch.Tensor], torch.Tensor] | None = None,
        *,
        generator: nn.Module,
        targeted: bool = False,
        clip_min: float = 0.0,
        clip_max: float = 1.0,
        config: str | TransferConfig | None = None,
        guard: GuardSpec = AUTO,
        latent: str = "random",
        device: str | torch.device | None = None,
        seed: int = 0,
        progress: bool = True,
        options: AttackOptions | None = None,
        **deprecated: Any,
    ):
        check_guard_spec(guard)  # checked here, resolved (perhaps distilled) at the first fit
        options = AttackOptions() if options is None else options
        if not isinstance(options, AttackOptions):
            raise TypeError(f"options must be an AttackOptions, got {type(options).__name__}")
        settings = resolve_config("realistic" if config is None else config)
        if config is None and guard is None and not deprecated:
            warnings.warn(
                "ATGANAttack(guard=None) chose the paper's fit settings before release 0.2 and does so until 0.3; "
                "write config='paper' for the paper's attack, or config='realistic', guard=None for the realistic "
                "settings without guards",
                DeprecationWarning,
                stacklevel=2,
            )
            settings = TransferConfig.paper(search_steps=settings.search_steps)
        if deprecated:
            settings, options = split_keywords(deprecated, settings, options, guard_is_none=guard is None)
        super().__init__(
            model,
            generator=generator,
            targeted=targeted,
            clip_min=clip_min,
            clip_max=clip_max,
            latent=latent,
            invert_steps=options.invert_steps,
            invert_lr=options.invert_lr,
            device=device,
            seed=seed,
            progress=progress,
            distance=options.distance,
        )
        self.config = replace(settings, seed=seed)
        self.options = options
        self.native_generator = generator  # G_orig as given; self.generator maps it to the model's size
        if options.image_size is not None:
            self._meet_input_size(options.image_size)
        self.guard = guard
        self._compiled = CompiledModules(options.compile)
        self._guards: tuple[nn.Module, ...] | None = None
        self._cache = FitCache()

    def _meet_input_size(self, size: tuple[int, int]) -> None:
        """The generator's images brought to the model's input ``size`` (``options.resize``): once, before any
        fit; an attack already fitted at another size refuses, naming both."""
        current = tuple(self.generator.image_shape[1:])
        if current == size:
            return
        if self.generator is not self.native_generator or self._cache_used():
            raise ValueError(
                f"this attack works at the model's input size {current}; inputs of size {size} need another "
                "ATGANAttack (one per model input size)"
            )
        self.generator = as_generator_module(ResizedGenerator(self.native_generator, size, self.options.resize))
        self._reference_copies.clear()

    def _cache_used(self) -> bool:
        return getattr(self, "_guards", None) is not None or bool(getattr(self, "_cache", None))

    @property
    def search_steps(self) -> int:
        """The shrink's passes (``config.search_steps``)."""
        return self.config.search_steps

    @property
    def precision(self) -> str:
        """``options.precision``."""
        return self.options.precision

    def _repr_fields(self) -> dict[str, Any]:
        options = {k: v for k, v in asdict(self.options).items() if k not in ("distance", "guard_cache_dir")}
        return {**asdict(self.config), "guard": describe_guard(self.guard), **options}

    def prepare_guard(self, device: str | torch.device | None = None) -> tuple[nn.Module, ...]:
        """The guards the fit will use, resolved now: with ``guard="auto"`` a generator without guards
        of its own gets one distilled from G_orig (trained once, with a progress bar, then read from
        the cache). Returns them (empty for ``guard=None``)."""
        if self._guards is None:
            if device is None:
                device = self.device if self.device is not None else next(self.generator.parameters()).device
            self._guards = resolve_guards(
                self.guard,
                self.generator,
                cache_dir=self.options.guard_cache_dir,
                device=device,
                progress=self.progress,
            )
        return self._guards

    # ----------------------------------------------------------------------------------------
    # The one implementation behind both faces.

    @overload
    def fit(self, model: Any = None, target: int | None = None) -> FitResult: ...

    @overload
    def fit(self, model: Any = None, *, targets: Sequence[int | None]) -> dict[int | None, FitResult]: ...

    def fit(self, model: Any = None, target: Any = None, *, targets: Any = None) -> Any:
        """Fits (or returns the cached) G_attack for ``model`` (default: the AdverTorch model) and ``target``.

        With ``targets=[...]`` (class indices; ``None`` for untargeted) it returns each one's fit, keyed by
        target, and fits the missing ones together in one run (:mod:`atgan_plugin.attack.fit`).
        """
        model = self._model_or_default(model)
        if targets is None:
            target = self._check_target(target)
            return self._fit_many(model, [target])[target]
        if target is not None:
            raise ValueError("give either target= (one fit) or targets= (several), not both")
        return self._fit_many(model, [self._check_target(t) for t in targets])

    def _fit_many(self, model: Any, targets: list[int | None]) -> dict[int | None, FitResult]:
        """Each target's fit: the cached ones as they are, the missing ones fitted in one run."""
        setting = self._fit_setting(model)
        fits = {t: self._cache.get(model, t, setting) for t in dict.fromkeys(targets)}
        missing = [t for t, fit in fits.items() if fit is None]
        if missing:
            classify = self._classifier_fn(model)
            device = self._device_for(model)
            guards = self.prepare_guard(device) if self.config.gamma > 0 else ()
            per_target = min(self.options.joint_batch_size or self.config.batch_size, self.config.batch_size)
            with eval_mode(torch_module_of(model)):
                self._predicted_classes(model, classify, self._one_image(device))  # the sizes meet, or a named error
                for group in fit_groups(missing, per_target < self.config.batch_size):
                    made = self._run_fits(
                        classify,
                        group,
                        config=self.config,
                        batch_per_target=per_target if len(group) > 1 else self.config.batch_size,
                        bounds=setting[0],
                        device=device,
                        guards=guards,
                        sync=None,
                    )
                    for t, fit in made.items():
                        self._cache.put(model, t, setting, fit)
                        fits[t] = fit
        return cast("dict[int | None, FitResult]", fits)  # every missing entry was filled above

    def _one_image(self, device: torch.device) -> torch.Tensor:
        """One G_orig image ``(1, C, H, W)``, drawn apart from every seeded stream."""
        home = model_device(self.generator)
        z = self.generator.sample_z(1, generator=torch.Generator().manual_seed(0), device=home)
        with torch.no_grad(), eval_mode(self.generator):
            image: torch.Tensor = self.generator(z, torch.zeros(1, dtype=torch.long, device=home))
        return image.to(device)

    def _run_fits(
        self,
        classify: Callable[[torch.Tensor], torch.Tensor],
        targets: list[int | None],
        *,
        config: TransferConfig,
        batch_per_target: int,
        bounds: tuple[float, float],
        device: torch.device,
        guards: tuple[nn.Module, ...],
        sync: GradientSync | None,
    ) -> dict[int | None, FitResult]:
        """The one place fits are made (:func:`~atgan_plugin.attack.fit.fit_attack_generators`): one target
        alone, several together (``batch_per_target`` examples each per step). :mod:`atgan_plugin.attack.distributed` overrides it to give
        each process its seed, its share of the batches and a gradient ``sync``."""
        return fit_attack_generators(
            self.generator,
            classify,
            targets,
            config=config,
            batch_per_target=batch_per_target,
            bounds=bounds,
            device=device,
            progress=self.progress,
            guard=guards,
            precision=self.options.precision,
            sync=sync,
        )

    def _fit_setting(self, model: Any) -> tuple[Any, ...]:
        """The cache's setting key for ``model``: (bounds, Foolbox preprocessing, device); see :func:`fit_setting`."""
        return fit_setting(model, (float(self.clip_min), float(self.clip_max)), self._device_for(model))

    @torch.no_grad()
    def generate(
        self,
        sources: torch.Tensor,
        *,
        target: int | None = None,
        z: torch.Tensor | None = None,
        model: Any = None,
        with_reference: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Adversarial images in [0, 1] of the classes ``sources`` ``(N,)``: one forward pass of G_attack,
        then the per-example shrink towards G_orig (``config.search_steps + 2`` model passes; none when 0).

        With ``with_reference=True`` also returns ``G_orig`` on the same ``z`` (for realism checks).
        """
        model = self._model_or_default(model)
        z = check_latents(z, len(sources), int(self.generator.z_dim))  # before the fit, like every input
        fit = self.fit(model, target)
        device = next(fit.generator.parameters()).device
        sources = self._check_labels(sources, "source labels", len(sources)).to(device)
        if z is None:
            z = self.generator.sample_z(len(sources), generator=self._latent_rng, device=device)
        z = z.to(device, non_blocking=True)
        bounds = self._fit_setting(model)[0]
        with eval_mode(torch_module_of(model)):
            adversarial, reference = self._generate(
                fit, self._classifier_fn(model), z, sources, target, bounds, with_reference=with_reference
            )
        if with_reference and reference is not None:  # with_reference made the reference
            return adversarial, reference
        return adversarial

    def _generate(
        self,
        fit: FitResult,
        classify: Callable[[torch.Tensor], torch.Tensor],
        z: torch.Tensor,
        sources: torch.Tensor,
        target: int | None,
        bounds: tuple[float, float],
        *,
        with_reference: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The one generation path: G_attack's images for ``(z, sources)``, each shrunk towards G_orig's while
        it still fools ``classify``, and G_orig's images when made (the shrink or ``with_reference`` needs
        them); ``(N, C, H, W)`` in [0, 1]."""
        adversarial = self._forward(fit.generator, z, sources)
        reference = None
        if with_reference or self.search_steps > 0:
            reference = self._forward(self._reference_generator(z.device), z, sources)
        if self.search_steps == 0 or reference is None:
            return adversarial, reference
        shrunk = shrink_while_fooled(
            reference,
            adversarial,
            self._compiled_or(classify),
            sources,
            target,
            bounds=bounds,
            precision=self.options.precision,
            steps=self.search_steps,
        )
        return shrunk, reference

    def _forward(self, generator: nn.Module, z: torch.Tensor, sources: torch.Tensor) -> torch.Tensor:
        """``generator(z, sources)`` in float32, under the attack's precision (and compiled with ``compile``)."""
        with autocast(z.device, self.options.precision):
            images: torch.Tensor = self._compiled_or(generator)(z, sources)
            return images.float()

    def _compiled_or(self, function: Any) -> Any:
        """``function`` itself, or with ``options.compile`` and a torch module its ``torch.compile`` wrapper."""
        self._compiled.enabled = self.options.compile
        return self._compiled(function)

    def save_fit(self, path: str | Path, *, target: int | None = None, model: Any = None) -> None:
        """Writes the fitted G_attack for (model, target) as a safetensors file (atomically)."""
        write_fit(path, self.fit(self._model_or_default(model), target), target)

    def load_fit(self, path: str | Path, *, model: Any = None) -> FitResult:
        """Loads a G_attack saved by :meth:`save_fit` and caches it for ``model`` and its target.

        The file's tensor names and shapes are compared with this attack's generator before any
        weight is read; a digest mismatch or a non-finite weight is a ``CheckpointError``.
        """
        model = self._model_or_default(model)
        fit = read_fit(
            path, self.generator, config=self.config, check_target=self._check_target, device=self._device_for(model)
        )
        self._cache.put(model, fit.target, self._fit_setting(model), fit)
        return fit

    def _images(
        self,
        model: Any,
        classify: Callable[[torch.Tensor], torch.Tensor],
        z: torch.Tensor,
        sources: torch.Tensor,
        targets: torch.Tensor | None,
        bounds: tuple[float, float],
    ) -> torch.Tensor:
        # One G_attack per distinct target (one in all when untargeted); the missing ones fitted together.
        out = torch.empty((len(z), *self.generator.image_shape), device=z.device)
        groups = [None] if targets is None else torch.unique(targets).tolist()
        fits = self._fit_many(model, groups)
        for target in groups:
            mask = torch.ones(len(z), dtype=torch.bool, device=z.device) if target is None else (targets == target)
            with torch.no_grad():
                out[mask] = self._generate(fits[target], classify, z[mask], sources[mask], target, bounds)[0]
        return out
