"""``check_encoder``: tell an encoder author what their encoder gets wrong, before training does.

Shapes:
    T: tasks, N: transitions per task, C: context_dim, L: latent_dim.
"""

from __future__ import annotations

import copy
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import torch
from torch import Tensor
from torch.distributions import Distribution

from encoders.base import ContextEncoder, describe_distribution
from encoders.registry import (
    EncoderError,
    _qualified_name,
    distribution_problem,
    instantiate_encoder,
    resolve_encoder_class,
)

# (n_tasks, n_transitions) probed by the shape check; includes a single transition and a single task.
SHAPE_CASES: tuple[tuple[int, int], ...] = ((1, 1), (3, 1), (2, 5), (4, 17))
PROBE_POINTS = 8
"""Points at which posteriors without a closed-form mean and stddev are compared, by log-density."""
_ATOL = 1e-5
_RTOL = 1e-4


class CheckResult(NamedTuple):
    """One line of a :class:`CheckReport`: the check's name, whether it passed, and why."""

    name: str
    ok: bool
    detail: str


@dataclass
class CheckReport:
    """What :func:`check_encoder` found.

    Attributes:
        encoder: the encoder's class path.
        results: one ``(name, ok, detail)`` per check, in the order they ran.
    """

    encoder: str
    results: list[CheckResult] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """True when every check passed (and at least one ran)."""
        return bool(self.results) and all(result.ok for result in self.results)

    def add(self, name: str, ok: bool, detail: str = "") -> None:
        """Append one result."""
        self.results.append(CheckResult(name, bool(ok), detail))

    def __str__(self) -> str:
        width = max([len(result.name) for result in self.results] + [5])
        lines = [f"check_encoder: {self.encoder}"]
        for result in self.results:
            lines.append(f"  {'PASS' if result.ok else 'FAIL'}  {result.name:<{width}}  {result.detail}".rstrip())
        n_passed = sum(result.ok for result in self.results)
        verdict = "PASS" if self.passed else "FAIL"
        lines.append(f"{verdict}: {n_passed}/{len(self.results)} checks passed")
        return "\n".join(lines)


def check_encoder(
    encoder_or_class: ContextEncoder | type[ContextEncoder] | str,
    *,
    context_dim: int,
    latent_dim: int,
    kwargs: Mapping[str, Any] | None = None,
    device: str = "cpu",
) -> CheckReport:
    """Check an encoder against the ``ContextEncoder`` contract and report what passed.

    Checks, each a line of the report:

    - ``device``: the device exists and the encoder moves to it;
    - ``output T=.. N=..``: for several numbers of tasks and transitions (N = 1 included), forward
      returns a distribution with batch_shape (T,), event_shape (L,), whose ``rsample()`` has shape
      [T, L], is finite and lies on the device;
    - ``gradient``: a loss on ``rsample()`` back-propagates to the encoder's parameters;
    - ``kl``: ``kl_to_prior`` is finite with shape [T] (zeros when ``information_bottleneck`` is False);
    - ``prior``: ``prior(T)`` has the right shapes and lies on the device;
    - ``no carried state``: the same context twice gives the same posterior (posteriors are compared by
      mean and stddev, or, where the distribution has no closed form for them (a flow, a mixture),
      by log-density at fixed probe points that are the same for every task);
    - ``tasks independent``: a task's posterior does not depend on the other tasks in the batch;
    - ``permutation invariant``: (set encoders) reordering each task's context leaves the posterior unchanged.

    A given encoder instance is not modified: the checks run on a deep copy.

    Args:
        encoder_or_class: an encoder, a ``ContextEncoder`` subclass (built with ``kwargs``), or a
            spec string (registered name or ``"package.module:ClassName"``).
        context_dim: size of one context transition.
        latent_dim: size of z.
        kwargs: constructor keyword arguments, when a class or spec is given.
        device: where to run the checks, e.g. ``"cpu"`` or ``"cuda"``.

    Returns:
        The report; ``report.passed`` says whether every check passed and ``str(report)`` is a table.

    Raises:
        EncoderError: a spec cannot be resolved or the class cannot be built with ``kwargs``.

    Shapes:
        probe contexts [T, N, context_dim] for (T, N) in ``SHAPE_CASES``.

    Examples:
        >>> report = check_encoder("mlp", context_dim=4, latent_dim=2, kwargs={"hidden_sizes": [8]})
        >>> report.passed
        True
    """
    if isinstance(encoder_or_class, str):
        encoder_or_class = resolve_encoder_class(encoder_or_class)
    if isinstance(encoder_or_class, type):
        encoder = instantiate_encoder(encoder_or_class, context_dim=context_dim, latent_dim=latent_dim, kwargs=kwargs)
    elif isinstance(encoder_or_class, ContextEncoder):
        encoder = copy.deepcopy(encoder_or_class)
    else:
        raise EncoderError(
            f"check_encoder expects a ContextEncoder, a ContextEncoder subclass or a spec string, "
            f"got {encoder_or_class!r}"
        )
    report = CheckReport(encoder=_qualified_name(type(encoder)))

    if encoder.context_dim != context_dim or encoder.latent_dim != latent_dim:
        report.add(
            "dimensions",
            False,
            f"expected context_dim={context_dim}, latent_dim={latent_dim}; the encoder has "
            f"context_dim={encoder.context_dim}, latent_dim={encoder.latent_dim}",
        )
        return report
    try:
        target = torch.device(device)
        encoder.to(target)
        torch.zeros(1, device=target)
    except Exception as error:
        report.add("device", False, f"cannot run on {device!r}: {type(error).__name__}: {error}")
        return report
    report.add("device", True, f"moved to {target}")

    generator = torch.Generator(device="cpu").manual_seed(0)

    def context_of(n_tasks: int, n_transitions: int) -> Tensor:
        dtype = _floating_dtype(encoder)
        return torch.randn(n_tasks, n_transitions, context_dim, generator=generator, dtype=dtype).to(target)

    # Shapes, in training mode (as during meta-training).
    encoder.train()
    shapes_ok = True
    for n_tasks, n_transitions in SHAPE_CASES:
        ok, detail = _check_output(encoder, context_of(n_tasks, n_transitions), latent_dim, target)
        report.add(f"output T={n_tasks} N={n_transitions}", ok, detail)
        shapes_ok = shapes_ok and ok
    if not shapes_ok:
        return report  # every later check needs a well-formed output

    _check_gradient(report, encoder, context_of(3, 4))
    _check_kl_and_prior(report, encoder, context_of(3, 4), target)

    # Determinism-based checks in eval mode (dropout off), without gradient.
    encoder.eval()
    dtype = _floating_dtype(encoder)
    with torch.no_grad():
        context = context_of(4, 6)
        first = _statistics(encoder(context), target, dtype)
        same, detail = _same_statistics(first, _statistics(encoder(context), target, dtype))
        report.add("no carried state", same, detail or "the same context twice gives the same posterior")

        alone = _statistics(encoder(context[1:2]), target, dtype)
        same, detail = _same_statistics({name: value[1:2] for name, value in first.items()}, alone)
        report.add(
            "tasks independent",
            same,
            f"task 1 in a batch of 4 vs alone: {detail}" if detail else "a task's posterior ignores the other tasks",
        )

        if encoder.permutation_invariant:
            permutation = torch.stack(
                [torch.randperm(context.shape[1], generator=generator) for _ in range(context.shape[0])]
            ).to(target)  # [T, N], a different order per task
            shuffled = torch.gather(context, 1, permutation.unsqueeze(-1).expand_as(context))
            same, detail = _same_statistics(first, _statistics(encoder(shuffled), target, dtype))
            report.add(
                "permutation invariant",
                same,
                f"reordering the context changed the posterior ({detail}); set permutation_invariant = False "
                "if order matters (and recurrent = True if it needs time order)"
                if detail
                else "reordering the context leaves the posterior unchanged",
            )
        else:
            report.add("permutation invariant", True, "skipped: permutation_invariant is False")
    return report


def check_encoder_cli(
    spec: str,
    *,
    context_dim: int,
    latent_dim: int,
    kwargs: Mapping[str, Any] | None,
    device: str,
) -> int:
    """Run :func:`check_encoder` on ``spec`` and print the report: the body of ``pearl check-encoder``.

    Args:
        spec: a registered name or ``"package.module:ClassName"``.
        context_dim: size of one context transition.
        latent_dim: size of z.
        kwargs: the encoder's keyword arguments.
        device: where to run the checks.

    Returns:
        0 when every check passed, 1 when some failed, 2 when the spec cannot be resolved or built
        (the ``EncoderError`` message is printed to stderr).
    """
    try:
        report = check_encoder(spec, context_dim=context_dim, latent_dim=latent_dim, kwargs=kwargs, device=device)
    except EncoderError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(report)
    return 0 if report.passed else 1


def _floating_dtype(encoder: ContextEncoder) -> torch.dtype:
    reference = encoder._reference_tensor()
    if reference is not None and reference.is_floating_point():
        return reference.dtype
    return torch.get_default_dtype()


def _check_output(encoder: ContextEncoder, context: Tensor, latent_dim: int, device: torch.device) -> tuple[bool, str]:
    n_tasks = context.shape[0]
    try:
        posterior = encoder(context)
    except Exception as error:
        return False, f"forward raised {type(error).__name__}: {error}"
    problem = distribution_problem(posterior, n_tasks=n_tasks, latent_dim=latent_dim)
    if problem is not None:
        return False, problem
    try:
        z = posterior.rsample()
    except Exception as error:
        return False, f"rsample() raised {type(error).__name__}: {error}"
    if tuple(z.shape) != (n_tasks, latent_dim):
        return False, f"rsample() returned shape {tuple(z.shape)}, expected ({n_tasks}, {latent_dim})"
    if z.device != device:
        return False, f"rsample() returned a tensor on {z.device}, expected {device}"
    if not torch.isfinite(z).all():
        return False, "rsample() returned non-finite values"
    return True, describe_distribution(posterior)


def _check_gradient(report: CheckReport, encoder: ContextEncoder, context: Tensor) -> None:
    parameters = dict(encoder.named_parameters())
    if not parameters:
        report.add("gradient", False, "the encoder has no parameters, so nothing can be trained")
        return
    encoder.zero_grad(set_to_none=True)
    try:
        z = encoder(context).rsample()  # [T, L]
    except Exception as error:
        report.add("gradient", False, f"rsample() raised {type(error).__name__}: {error}")
        return
    if not z.requires_grad:
        report.add(
            "gradient",
            False,
            "rsample() returned a tensor with no gradient: the encoder detaches z or the distribution "
            "does not reparameterise (use rsample-capable distributions and avoid .detach()/sample())",
        )
        return
    weights = torch.randn(z.shape, generator=torch.Generator().manual_seed(1), dtype=z.dtype).to(z.device)
    (z * weights).sum().backward()
    reached = [name for name, p in parameters.items() if p.grad is not None and p.grad.abs().sum() > 0]
    non_finite = [name for name, p in parameters.items() if p.grad is not None and not torch.isfinite(p.grad).all()]
    encoder.zero_grad(set_to_none=True)
    if non_finite:
        report.add("gradient", False, f"non-finite gradients in {', '.join(non_finite)}")
    elif not reached:
        report.add("gradient", False, "no parameter received a gradient through rsample()")
    else:
        missed = [name for name in parameters if name not in reached]
        detail = f"{len(reached)}/{len(parameters)} parameter tensors receive a gradient through rsample()"
        if missed:
            detail += f" (none reaches: {', '.join(missed)})"
        report.add("gradient", True, detail)


def _check_kl_and_prior(report: CheckReport, encoder: ContextEncoder, context: Tensor, device: torch.device) -> None:
    n_tasks = context.shape[0]
    try:
        kl = encoder.kl_to_prior(encoder(context))
    except Exception as error:
        report.add("kl", False, f"kl_to_prior raised {type(error).__name__}: {error}")
    else:
        if not isinstance(kl, Tensor) or tuple(kl.shape) != (n_tasks,):
            shape = tuple(kl.shape) if isinstance(kl, Tensor) else type(kl).__name__
            report.add("kl", False, f"kl_to_prior returned {shape}, expected a tensor of shape ({n_tasks},)")
        elif not torch.isfinite(kl).all():
            report.add("kl", False, f"kl_to_prior returned non-finite values {kl.tolist()}")
        elif not encoder.information_bottleneck and bool((kl != 0).any()):
            report.add("kl", False, f"information_bottleneck is False but kl_to_prior returned {kl.tolist()}")
        elif kl.device != device:
            report.add("kl", False, f"kl_to_prior returned a tensor on {kl.device}, expected {device}")
        elif encoder.information_bottleneck:
            report.add("kl", True, f"finite, mean {kl.mean().item():.4g} over {n_tasks} tasks")
        else:
            report.add("kl", True, "zeros (information_bottleneck is False)")
    try:
        prior = encoder.prior(n_tasks)
    except Exception as error:
        report.add("prior", False, f"prior raised {type(error).__name__}: {error}")
        return
    problem = distribution_problem(prior, n_tasks=n_tasks, latent_dim=encoder.latent_dim)
    if problem is not None:
        report.add("prior", False, problem.replace("forward returned", "prior returned"))
        return
    z = prior.sample()
    if z.device != device:
        report.add("prior", False, f"prior samples lie on {z.device}, expected {device}")
    else:
        report.add("prior", True, describe_distribution(prior))


def _statistics(posterior: Distribution, device: torch.device, dtype: torch.dtype) -> dict[str, Tensor]:
    """Per-task summary used to compare posteriors: mean and stddev where both are defined, else
    (also) the log-density at fixed probe points.

    Every task is probed at the same ``PROBE_POINTS`` points, drawn once with shape [P, 1, L] and
    broadcast over the batch, so task i is probed identically in a batch of 4 and alone (points
    drawn per batch would differ with T and make a valid flow or mixture posterior look coupled).

    Shapes:
        posterior batch_shape (T,), event_shape (L,); every returned tensor has leading axis T.
    """
    stats: dict[str, Tensor] = {}
    for name in ("mean", "stddev"):
        try:
            stats[name] = getattr(posterior, name)
        except NotImplementedError:
            continue
    if len(stats) < 2:
        n_tasks, latent_dim = posterior.batch_shape[0], posterior.event_shape[0]
        generator = torch.Generator().manual_seed(2)
        points = torch.randn((PROBE_POINTS, 1, latent_dim), generator=generator, dtype=dtype)  # [P, 1, L]
        points = points.to(device).expand(PROBE_POINTS, n_tasks, latent_dim)  # the same P points for every task
        stats["log_prob"] = posterior.log_prob(points).transpose(0, 1)  # [P, T] -> [T, P]
    return stats


def _same_statistics(a: dict[str, Tensor], b: dict[str, Tensor]) -> tuple[bool, str]:
    for name, value in a.items():
        other = b.get(name)
        if other is None or other.shape != value.shape:
            return False, f"{name} has shape {tuple(value.shape)} vs {None if other is None else tuple(other.shape)}"
        if not torch.allclose(value, other, atol=_ATOL, rtol=_RTOL):
            gap = (value - other).abs().max().item()
            return False, f"{name} differs by up to {gap:.3g}"
    return True, ""
