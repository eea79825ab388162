"""Find encoder classes by registered name, by ``package.module:ClassName`` path, or by entry point.

Three ways to make an encoder available to a config's ``encoder.name``:

1. ``@register_encoder("name")`` on the class (the module must be imported before training).
2. The path ``"package.module:ClassName"`` (the module must be importable, e.g. on PYTHONPATH).
3. An installed distribution that declares an entry point in the group ``pearl.encoders``,
   ``name = package.module:ClassName``; it is found by name without importing it in advance.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Mapping
from importlib import metadata
from typing import Any, TypeVar

import torch

from encoders.base import ContextEncoder, describe_distribution

ENTRY_POINT_GROUP = "pearl.encoders"

# Name -> class for encoders registered with the decorator. This is the one piece of module state
# in the package; like gymnasium's env registry, it is filled at import time and only read afterwards.
_REGISTRY: dict[str, type[ContextEncoder]] = {}

EncoderClass = TypeVar("EncoderClass", bound=type[ContextEncoder])


class EncoderError(ValueError):
    """An encoder spec cannot be resolved, built, or does not honour the ``ContextEncoder`` contract."""


def register_encoder(name: str) -> Callable[[EncoderClass], EncoderClass]:
    """Class decorator that registers a ``ContextEncoder`` subclass under ``name``.

    Registering a second class under a taken name raises ``EncoderError``. Registering the same
    class again (same module and qualified name, as happens when a module is reloaded) replaces it.

    Args:
        name: the name a config's ``encoder.name`` uses; must not contain ':'.

    Returns:
        The decorator, which returns the class unchanged.

    Examples:
        >>> @register_encoder("my-doc-encoder")  # doctest: +SKIP
        ... class MyEncoder(ContextEncoder):
        ...     ...
    """
    if not isinstance(name, str) or not name or ":" in name or name != name.strip():
        raise EncoderError(f"encoder name must be a non-empty string without ':' or surrounding spaces, got {name!r}")

    def decorator(cls: EncoderClass) -> EncoderClass:
        if not (isinstance(cls, type) and issubclass(cls, ContextEncoder)):
            raise EncoderError(f"register_encoder({name!r}): {cls!r} is not a subclass of encoders.ContextEncoder")
        existing = _REGISTRY.get(name)
        if existing is not None and _qualified_name(existing) != _qualified_name(cls):
            raise EncoderError(
                f"encoder name {name!r} is already registered to {_qualified_name(existing)}; "
                f"cannot register {_qualified_name(cls)} under the same name"
            )
        _REGISTRY[name] = cls
        return cls

    return decorator


def registered_encoders() -> dict[str, type[ContextEncoder]]:
    """All encoders known by name: those registered by decorator plus installed entry points.

    Entry points in the group ``pearl.encoders`` are read (and their modules imported) on each
    call, so a package installed after start-up is found.

    Returns:
        A new dict, name -> class, sorted by name.

    Raises:
        EncoderError: an entry point does not load, is not a ``ContextEncoder``, or clashes with
            another name.
    """
    found: dict[str, type[ContextEncoder]] = dict(_REGISTRY)
    for name, entry_point in _entry_points().items():
        if name in found:
            raise EncoderError(_clash_message(name, entry_point))
        found[name] = _load_entry_point(entry_point)
    return dict(sorted(found.items()))


def resolve_encoder_class(spec: str) -> type[ContextEncoder]:
    """The encoder class named by ``spec``: a registered name or ``"package.module:ClassName"``.

    Args:
        spec: a name from :func:`registered_encoders` (decorator or entry point), or an import
            path with a colon before the class name (``ClassName`` may be dotted for nested classes).

    Returns:
        The class, a subclass of ``ContextEncoder``.

    Raises:
        EncoderError: unknown name (the message lists the known ones), a module that does not
            import (the message names it and the error), a missing attribute, or an object that is
            not a ``ContextEncoder`` subclass.

    Examples:
        >>> resolve_encoder_class("mlp").__name__
        'MLPEncoder'
        >>> resolve_encoder_class("encoders.recurrent:GRUEncoder").__name__
        'GRUEncoder'
    """
    if not isinstance(spec, str) or not spec.strip():
        raise EncoderError(f"encoder spec must be a registered name or 'package.module:ClassName', got {spec!r}")
    spec = spec.strip()
    if ":" in spec:
        return _resolve_path(spec)
    if spec in _REGISTRY:
        entry_point = _entry_points().get(spec)
        if entry_point is not None:
            raise EncoderError(_clash_message(spec, entry_point))
        return _REGISTRY[spec]
    entry_points = _entry_points()
    if spec in entry_points:
        return _load_entry_point(entry_points[spec])
    known = sorted(set(_REGISTRY) | set(entry_points))
    raise EncoderError(
        f"unknown encoder {spec!r}; known encoders: {', '.join(known)}. "
        "A custom encoder can also be given as 'package.module:ClassName'"
    )


def build_encoder(
    spec: str,
    *,
    context_dim: int,
    latent_dim: int,
    kwargs: Mapping[str, Any] | None = None,
) -> ContextEncoder:
    """Resolve ``spec``, construct the encoder and check its output on a tiny random context.

    The check runs one forward pass (no gradient, eval mode, a private RNG) on a context of
    shape [2, 3, context_dim] so that an encoder returning the wrong type or shape is reported
    before training starts.

    Args:
        spec: a registered name or ``"package.module:ClassName"``.
        context_dim: size of one context transition.
        latent_dim: size of z.
        kwargs: the encoder's own keyword arguments (the config's ``encoder.kwargs``).

    Returns:
        The encoder, in training mode, on the CPU (move it with ``.to(device)``).

    Raises:
        EncoderError: resolution fails, the constructor rejects the arguments, or the output is
            not a distribution with batch_shape (n_tasks,) and event_shape (latent_dim,).

    Shapes:
        the encoder maps [T, N, context_dim] to batch_shape (T,), event_shape (latent_dim,).

    Examples:
        >>> encoder = build_encoder("mlp", context_dim=6, latent_dim=5, kwargs={"hidden_sizes": [32, 32]})
        >>> encoder(torch.zeros(4, 10, 6)).batch_shape
        torch.Size([4])
    """
    cls = resolve_encoder_class(spec)
    encoder = instantiate_encoder(cls, context_dim=context_dim, latent_dim=latent_dim, kwargs=kwargs)
    problem = output_problem(encoder, n_tasks=2, n_transitions=3)
    if problem is not None:
        raise EncoderError(f"encoder {_qualified_name(cls)} (spec {spec!r}): {problem}")
    return encoder


def instantiate_encoder(
    cls: type[ContextEncoder],
    *,
    context_dim: int,
    latent_dim: int,
    kwargs: Mapping[str, Any] | None = None,
) -> ContextEncoder:
    """Construct ``cls(context_dim=..., latent_dim=..., **kwargs)``, turning failures into ``EncoderError``.

    Args:
        cls: a ``ContextEncoder`` subclass.
        context_dim: size of one context transition.
        latent_dim: size of z.
        kwargs: the encoder's own keyword arguments.

    Returns:
        The constructed encoder.

    Raises:
        EncoderError: naming the class and the kwargs when the constructor rejects them or fails.
    """
    name = _qualified_name(cls)
    if not (isinstance(cls, type) and issubclass(cls, ContextEncoder)):
        raise EncoderError(f"{cls!r} is not a subclass of encoders.ContextEncoder")
    kwargs = dict(kwargs or {})
    reserved = sorted({"context_dim", "latent_dim"} & set(kwargs))
    if reserved:
        raise EncoderError(
            f"encoder {name}: kwargs must not set {', '.join(reserved)} (they come from the environment "
            f"and encoder.latent_dim); got kwargs {kwargs!r}"
        )
    for key in kwargs:
        if not isinstance(key, str):
            raise EncoderError(f"encoder {name}: kwargs keys must be strings, got {key!r}")
    try:
        inspect.signature(cls).bind(context_dim=context_dim, latent_dim=latent_dim, **kwargs)
    except TypeError as error:
        raise EncoderError(
            f"encoder {name} rejected kwargs {kwargs!r}: {error}. "
            f"Its constructor is {cls.__name__}{_signature_text(cls)}"
        ) from error
    except ValueError:  # no signature available (e.g. a C extension); let the call decide
        pass
    try:
        encoder = cls(context_dim=context_dim, latent_dim=latent_dim, **kwargs)
    except Exception as error:
        raise EncoderError(
            f"encoder {name} could not be built with context_dim={context_dim}, latent_dim={latent_dim}, "
            f"kwargs {kwargs!r}: {type(error).__name__}: {error}"
        ) from error
    if not hasattr(encoder, "latent_dim") or not hasattr(encoder, "_modules"):
        raise EncoderError(f"encoder {name}: __init__ must call super().__init__(context_dim=..., latent_dim=...)")
    if encoder.context_dim != context_dim or encoder.latent_dim != latent_dim:
        raise EncoderError(
            f"encoder {name}: expected context_dim={context_dim}, latent_dim={latent_dim} to be passed to "
            f"ContextEncoder.__init__, but the instance has context_dim={encoder.context_dim}, "
            f"latent_dim={encoder.latent_dim}"
        )
    return encoder


def output_problem(encoder: ContextEncoder, *, n_tasks: int, n_transitions: int) -> str | None:
    """Run one forward pass on a random context and describe what is wrong with the output, if anything.

    The pass runs in eval mode without gradient, with a private random generator (the global RNG
    is not touched by the context), and restores the encoder's training mode afterwards.

    Args:
        encoder: the encoder to probe.
        n_tasks: T of the probe context.
        n_transitions: N of the probe context.

    Returns:
        None when the output is a distribution with batch_shape (T,), event_shape (L,) and
        ``has_rsample``; otherwise one sentence stating what was expected and what was returned.

    Shapes:
        probe context: [T, N, context_dim].
    """
    reference = encoder._reference_tensor()
    device = reference.device if reference is not None else torch.device("cpu")
    dtype = reference.dtype if reference is not None and reference.is_floating_point() else torch.get_default_dtype()
    generator = torch.Generator(device="cpu").manual_seed(0)
    context = torch.randn(n_tasks, n_transitions, encoder.context_dim, generator=generator, dtype=dtype).to(device)
    was_training = encoder.training
    encoder.eval()
    try:
        with torch.no_grad():
            output = encoder(context)
    except Exception as error:
        return (
            f"forward failed on a context of shape {tuple(context.shape)}: {type(error).__name__}: {error}"
        )
    finally:
        encoder.train(was_training)
    return distribution_problem(output, n_tasks=n_tasks, latent_dim=encoder.latent_dim)


def distribution_problem(output: object, *, n_tasks: int, latent_dim: int) -> str | None:
    """Describe how ``output`` fails the forward contract, or None if it meets it.

    Shapes:
        expected: batch_shape (n_tasks,), event_shape (latent_dim,).
    """
    expected = (
        f"expected a torch.distributions.Distribution with batch_shape ({n_tasks},) and "
        f"event_shape ({latent_dim},) supporting rsample()"
    )
    if not isinstance(output, torch.distributions.Distribution):
        return f"{expected}, but forward returned {describe_distribution(output)}"
    if tuple(output.batch_shape) != (n_tasks,) or tuple(output.event_shape) != (latent_dim,):
        hint = ""
        if tuple(output.batch_shape) == (n_tasks, latent_dim) and tuple(output.event_shape) == ():
            hint = " (did you forget .to_event(1)?)"
        return f"{expected}, but forward returned {describe_distribution(output)}{hint}"
    if not output.has_rsample:
        return f"{expected}, but forward returned {type(output).__name__}, which has no rsample()"
    return None


def _resolve_path(spec: str) -> type[ContextEncoder]:
    module_name, _, attribute_path = spec.partition(":")
    if not module_name or not attribute_path or ":" in attribute_path:
        raise EncoderError(f"encoder path {spec!r} must have the form 'package.module:ClassName'")
    try:
        module = importlib.import_module(module_name)
    except Exception as error:
        raise EncoderError(
            f"encoder path {spec!r}: could not import module {module_name!r}: {type(error).__name__}: {error}"
        ) from error
    target: object = module
    for part in attribute_path.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise EncoderError(f"encoder path {spec!r}: module {module_name!r} has no attribute {attribute_path!r}") from None
    return _require_encoder_class(target, where=f"encoder path {spec!r}")


def _require_encoder_class(target: object, *, where: str) -> type[ContextEncoder]:
    if isinstance(target, type) and issubclass(target, ContextEncoder):
        return target
    kind = f"class {_qualified_name(target)}" if isinstance(target, type) else f"{type(target).__name__} {target!r}"
    raise EncoderError(f"{where} names {kind}, which is not a subclass of encoders.ContextEncoder")


def _entry_points() -> dict[str, metadata.EntryPoint]:
    """Entry points of the group, by name; the same target seen twice (two sys.path entries) counts once."""
    by_name: dict[str, metadata.EntryPoint] = {}
    for entry_point in metadata.entry_points(group=ENTRY_POINT_GROUP):
        previous = by_name.get(entry_point.name)
        if previous is not None and previous.value != entry_point.value:
            raise EncoderError(
                f"entry point {entry_point.name!r} in group {ENTRY_POINT_GROUP!r} is declared twice: "
                f"{previous.value!r} ({_distribution_name(previous)}) and {entry_point.value!r} "
                f"({_distribution_name(entry_point)})"
            )
        by_name.setdefault(entry_point.name, entry_point)
    return by_name


def _load_entry_point(entry_point: metadata.EntryPoint) -> type[ContextEncoder]:
    where = (
        f"entry point {entry_point.name!r} = {entry_point.value!r} in group {ENTRY_POINT_GROUP!r} "
        f"(distribution {_distribution_name(entry_point)})"
    )
    try:
        target = entry_point.load()
    except Exception as error:
        raise EncoderError(f"{where} could not be loaded: {type(error).__name__}: {error}") from error
    return _require_encoder_class(target, where=where)


def _clash_message(name: str, entry_point: metadata.EntryPoint) -> str:
    return (
        f"encoder name {name!r} is registered by decorator ({_qualified_name(_REGISTRY[name])}) and also "
        f"declared as entry point {entry_point.value!r} in group {ENTRY_POINT_GROUP!r} by distribution "
        f"{_distribution_name(entry_point)}; rename one of them or use the 'package.module:ClassName' path"
    )


def _distribution_name(entry_point: metadata.EntryPoint) -> str:
    distribution = getattr(entry_point, "dist", None)
    return repr(distribution.name) if distribution is not None else "unknown"


def _qualified_name(obj: object) -> str:
    module = getattr(obj, "__module__", None)
    qualname = getattr(obj, "__qualname__", None) or type(obj).__qualname__
    return f"{module}:{qualname}" if module else str(qualname)


def _signature_text(cls: type) -> str:
    try:
        return str(inspect.signature(cls))
    except (TypeError, ValueError):
        return "(...)"
