"""The encoder contract, registry, built-ins and checker (encoders/)."""

from __future__ import annotations

import doctest
import importlib
import logging
import re
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pyro.distributions as dist
import pytest
import torch
from torch import Tensor, nn
from torch.distributions import Distribution

import encoders
from encoders import (
    ContextEncoder,
    EncoderError,
    GRUEncoder,
    MLPEncoder,
    build_encoder,
    check_encoder,
    check_encoder_cli,
    register_encoder,
    registered_encoders,
    resolve_encoder_class,
)
from encoders import registry as registry_module
from tests.helpers import pip_install_encoder_package

CONTEXT_DIM, LATENT_DIM = 6, 3
REPO_ROOT = Path(__file__).resolve().parents[2]
SMALL_KWARGS: dict[str, dict] = {
    "mlp": {"hidden_sizes": [16, 16]},
    "deterministic": {"hidden_sizes": [16, 16]},
    "gru": {"embedding_sizes": [16], "hidden_size": 16},
    "attention": {"embed_dim": 16, "n_heads": 2, "embedding_sizes": [16], "head_sizes": [16]},
    "flow": {"hidden_sizes": [16], "embed_dim": 8, "flow_hidden_sizes": [16]},
    "mixture": {"hidden_sizes": [16], "n_components": 3},
}


# --------------------------------------------------------------------------------------------
# Encoders that break the contract on purpose.


class _GaussianHead(ContextEncoder):
    """Shared body: a linear map per transition, mean-pooled, to a diagonal Gaussian."""

    def __init__(self, *, context_dim: int, latent_dim: int) -> None:
        super().__init__(context_dim=context_dim, latent_dim=latent_dim)
        self.net = nn.Linear(context_dim, 2 * latent_dim)

    def params(self, context: Tensor) -> tuple[Tensor, Tensor]:
        mu, raw = self.net(context).mean(dim=1).split(self.latent_dim, dim=-1)  # [T, L] each
        return mu, nn.functional.softplus(raw) + 1e-3


class MissingToEvent(_GaussianHead):
    def forward(self, context: Tensor) -> Distribution:
        mu, scale = self.params(context)
        return dist.Normal(mu, scale)  # batch_shape (T, L): forgot .to_event(1)


class ReturnsTensor(_GaussianHead):
    def forward(self, context: Tensor) -> Distribution:
        return self.params(context)[0]  # type: ignore[return-value]


class FirstTransitionOnly(_GaussianHead):
    """Claims permutation invariance but reads only the first transition."""

    def forward(self, context: Tensor) -> Distribution:
        mu, scale = self.params(context[:, :1])
        return dist.Normal(mu, scale).to_event(1)


class DetachedSample(_GaussianHead):
    def forward(self, context: Tensor) -> Distribution:
        mu, scale = self.params(context)
        return dist.Normal(mu.detach(), scale.detach()).to_event(1)


class CarriesState(_GaussianHead):
    """A 'recurrent' encoder that wrongly keeps a running state between calls."""

    recurrent = True
    permutation_invariant = False

    def __init__(self, *, context_dim: int, latent_dim: int) -> None:
        super().__init__(context_dim=context_dim, latent_dim=latent_dim)
        self.calls = 0

    def forward(self, context: Tensor) -> Distribution:
        self.calls += 1
        mu, scale = self.params(context)
        return dist.Normal(mu + self.calls, scale).to_event(1)


class MixesTasks(_GaussianHead):
    """Pools over the task axis too, so one task's posterior depends on the others."""

    def forward(self, context: Tensor) -> Distribution:
        mu, scale = self.params(context)
        return dist.Normal(mu + mu.mean(dim=0, keepdim=True), scale).to_event(1)


class DiagonalMVN(_GaussianHead):
    """A Gaussian expressed as MultivariateNormal: no KL to Independent(Normal) is registered."""

    mc_kl_samples = 20000

    def forward(self, context: Tensor) -> Distribution:
        mu, scale = self.params(context)
        return dist.MultivariateNormal(mu, scale_tril=torch.diag_embed(scale))


class SplineFlow(_GaussianHead):
    """A valid non-Gaussian posterior: a Gaussian shaped by a spline flow (no closed-form mean or stddev)."""

    def __init__(self, *, context_dim: int, latent_dim: int) -> None:
        super().__init__(context_dim=context_dim, latent_dim=latent_dim)
        self.spline = dist.transforms.Spline(latent_dim, count_bins=4)

    def forward(self, context: Tensor) -> Distribution:
        mu, scale = self.params(context)
        return dist.TransformedDistribution(dist.Normal(mu, scale).to_event(1), [self.spline])


class SplineFlowMixesTasks(SplineFlow):
    """The flow above, but each task's base mean is shifted by the batch mean: tasks are coupled."""

    def forward(self, context: Tensor) -> Distribution:
        mu, scale = self.params(context)
        base = dist.Normal(mu + mu.mean(dim=0, keepdim=True), scale).to_event(1)
        return dist.TransformedDistribution(base, [self.spline])


class TwoGaussians(ContextEncoder):
    """A valid mixture posterior: two mean-pooled diagonal Gaussians with mean-pooled weights."""

    n_components = 2

    def __init__(self, *, context_dim: int, latent_dim: int) -> None:
        super().__init__(context_dim=context_dim, latent_dim=latent_dim)
        self.net = nn.Linear(context_dim, self.n_components * (2 * latent_dim + 1))

    def pooled(self, context: Tensor) -> Tensor:
        return self.net(context).mean(dim=1)  # [T, K(2L + 1)]

    def forward(self, context: Tensor) -> Distribution:
        K, L = self.n_components, self.latent_dim
        out = self.pooled(context)
        locs, raw = out[:, : 2 * K * L].reshape(-1, K, 2 * L).split(L, dim=-1)  # [T, K, L] each
        return dist.MixtureOfDiagNormals(locs, nn.functional.softplus(raw) + 1e-3, out[:, 2 * K * L :])


class TwoGaussiansLastTransitionOnly(TwoGaussians):
    """Claims permutation invariance but reads only the last transition."""

    def pooled(self, context: Tensor) -> Tensor:
        return self.net(context[:, -1])


class NeedsWidth(_GaussianHead):
    def __init__(self, *, context_dim: int, latent_dim: int, width: int) -> None:
        super().__init__(context_dim=context_dim, latent_dim=latent_dim)
        self.width = width

    def forward(self, context: Tensor) -> Distribution:
        mu, scale = self.params(context)
        return dist.Normal(mu, scale).to_event(1)


# --------------------------------------------------------------------------------------------
# Fixtures


@pytest.fixture
def write_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str, str], str]]:
    """Write an importable module to tmp_path; return its name. Removed from sys.modules afterwards."""
    monkeypatch.syspath_prepend(str(tmp_path))
    names: list[str] = []

    def write(name: str, source: str) -> str:
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
        importlib.invalidate_caches()
        names.append(name)
        return name

    yield write
    for name in names:
        sys.modules.pop(name, None)


@pytest.fixture
def isolated_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """Let a test register names without leaking them into other tests."""
    monkeypatch.setattr(registry_module, "_REGISTRY", dict(registry_module._REGISTRY))


THROWAWAY_SOURCE = """
    import pyro.distributions as dist
    from torch import nn
    from encoders import ContextEncoder


    class ThrowawayEncoder(ContextEncoder):
        def __init__(self, *, context_dim, latent_dim, scale=1.0):
            super().__init__(context_dim=context_dim, latent_dim=latent_dim)
            self.net = nn.Linear(context_dim, latent_dim)
            self.scale = scale

        def forward(self, context):
            mu = self.net(context).mean(dim=1)
            return dist.Normal(mu, self.scale * (mu * 0 + 1)).to_event(1)
"""


def _fake_installed_distribution(root: Path, package: str, entry_points: str) -> None:
    """What pip leaves in site-packages: the package plus a *.dist-info with entry_points.txt."""
    (root / package).mkdir(parents=True)
    (root / package / "__init__.py").write_text(textwrap.dedent(THROWAWAY_SOURCE))
    info = root / f"{package}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {package}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(textwrap.dedent(entry_points))


# --------------------------------------------------------------------------------------------
# Built-ins


def test_builtins_are_registered() -> None:
    known = registered_encoders()
    assert {"mlp", "deterministic", "gru", "attention", "flow", "mixture"} <= set(known)
    assert encoders.DEFAULT_ENCODER == "mlp"
    assert all(issubclass(cls, ContextEncoder) for cls in known.values())


@pytest.mark.parametrize("name", sorted(registered_encoders()))
def test_every_registered_encoder_passes_the_checker(name: str) -> None:
    report = check_encoder(name, context_dim=CONTEXT_DIM, latent_dim=LATENT_DIM, kwargs=SMALL_KWARGS.get(name))
    assert report.passed, str(report)
    names = [result.name for result in report.results]
    assert "output T=1 N=1" in names and "gradient" in names and "permutation invariant" in names


@pytest.mark.parametrize("name", sorted(SMALL_KWARGS))
def test_builtins_pass_with_default_kwargs(name: str) -> None:
    encoder = build_encoder(name, context_dim=CONTEXT_DIM, latent_dim=5)
    posterior = encoder(torch.randn(2, 1, CONTEXT_DIM))
    assert posterior.batch_shape == (2,) and posterior.event_shape == (5,)


def test_builtin_flags() -> None:
    assert (MLPEncoder.recurrent, MLPEncoder.permutation_invariant, MLPEncoder.information_bottleneck) == (
        False,
        True,
        True,
    )
    assert (GRUEncoder.recurrent, GRUEncoder.permutation_invariant) == (True, False)
    assert encoders.DeterministicEncoder.information_bottleneck is False
    assert encoders.AttentionEncoder.permutation_invariant is True


def test_deterministic_encoder_gives_a_point_with_gradient_and_no_kl() -> None:
    encoder = build_encoder("deterministic", context_dim=CONTEXT_DIM, latent_dim=LATENT_DIM, kwargs={"hidden_sizes": [8]})
    context = torch.randn(4, 5, CONTEXT_DIM)
    posterior = encoder(context)
    z1, z2 = posterior.rsample(), posterior.rsample()
    torch.testing.assert_close(z1, z2)
    torch.testing.assert_close(z1, encoder.net(context).mean(dim=1))
    assert z1.requires_grad
    torch.testing.assert_close(posterior.stddev, torch.zeros(4, LATENT_DIM))
    kl = encoder.kl_to_prior(posterior)
    assert torch.equal(kl, torch.zeros(4))
    kl.sum().backward()  # the KL is off but still part of the graph, with zero gradient
    assert all(p.grad is None or not p.grad.any() for p in encoder.parameters())


def test_gru_depends_on_order_and_carries_no_state() -> None:
    torch.manual_seed(0)
    encoder = GRUEncoder(context_dim=CONTEXT_DIM, latent_dim=LATENT_DIM, embedding_sizes=[16], hidden_size=16)
    context = torch.randn(3, 8, CONTEXT_DIM)
    first, again = encoder(context), encoder(context)
    torch.testing.assert_close(first.mean, again.mean, rtol=0, atol=0)
    torch.testing.assert_close(first.stddev, again.stddev, rtol=0, atol=0)
    reversed_order = encoder(context.flip(dims=[1]))
    assert not torch.allclose(first.mean, reversed_order.mean, atol=1e-4)
    # The last transition matters most but earlier ones still count: it reads the whole sequence.
    changed_first_step = context.clone()
    changed_first_step[:, 0] += 1.0
    assert not torch.allclose(first.mean, encoder(changed_first_step).mean, atol=1e-6)


def test_gru_handles_a_single_transition() -> None:
    encoder = GRUEncoder(context_dim=CONTEXT_DIM, latent_dim=LATENT_DIM, hidden_size=8, embedding_sizes=[])
    posterior = encoder(torch.randn(5, 1, CONTEXT_DIM))
    assert posterior.rsample().shape == (5, LATENT_DIM)


def test_attention_encoder_is_permutation_invariant_but_content_sensitive() -> None:
    torch.manual_seed(0)
    encoder = encoders.AttentionEncoder(context_dim=CONTEXT_DIM, latent_dim=LATENT_DIM, **SMALL_KWARGS["attention"])
    encoder.eval()
    context = torch.randn(2, 9, CONTEXT_DIM)
    order = torch.randperm(9)
    torch.testing.assert_close(encoder(context[:, order]).mean, encoder(context).mean, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(encoder(context[:, :4]).mean, encoder(context).mean, atol=1e-4)


def test_attention_product_pooling_passes_the_checker_and_narrows_as_one_over_n() -> None:
    torch.manual_seed(0)
    kwargs = {**SMALL_KWARGS["attention"], "pooling": "product"}
    encoder = encoders.AttentionEncoder(context_dim=CONTEXT_DIM, latent_dim=LATENT_DIM, **kwargs)
    encoder.eval()
    report = check_encoder(encoders.AttentionEncoder, context_dim=CONTEXT_DIM, latent_dim=LATENT_DIM, kwargs=kwargs)
    assert report.passed, str(report)
    # n copies of one transition attend to identical values, so they give n identical factors: the
    # product keeps the factor's mean and divides its variance by n
    one = torch.randn(2, 1, CONTEXT_DIM)
    single = encoder(one)
    for n in (2, 7):
        posterior = encoder(one.expand(-1, n, -1))
        torch.testing.assert_close(posterior.mean, single.mean, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(posterior.variance, single.variance / n, rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError, match="pooling"):
        encoders.AttentionEncoder(context_dim=CONTEXT_DIM, latent_dim=LATENT_DIM, pooling="max")


def test_empty_or_misshaped_context_is_a_clear_error() -> None:
    encoder = MLPEncoder(context_dim=CONTEXT_DIM, latent_dim=LATENT_DIM, hidden_sizes=[8])
    with pytest.raises(ValueError, match=r"empty.*prior"):
        encoder(torch.zeros(2, 0, CONTEXT_DIM))
    with pytest.raises(ValueError, match=r"\[n_tasks, n_transitions, 6\].*\(2, 3, 4\)"):
        encoder(torch.zeros(2, 3, 4))


def test_prior_follows_the_encoder_device_and_dtype() -> None:
    encoder = MLPEncoder(context_dim=CONTEXT_DIM, latent_dim=LATENT_DIM, hidden_sizes=[8]).double()
    prior = encoder.prior(4)
    assert prior.batch_shape == (4,) and prior.event_shape == (LATENT_DIM,)
    assert prior.sample().dtype == torch.float64


# --------------------------------------------------------------------------------------------
# KL fallback


def test_monte_carlo_kl_is_used_and_warned_once(caplog: pytest.LogCaptureFixture) -> None:
    torch.manual_seed(0)
    encoder = DiagonalMVN(context_dim=CONTEXT_DIM, latent_dim=LATENT_DIM)
    posterior = encoder(torch.randn(4, 5, CONTEXT_DIM))
    with caplog.at_level(logging.WARNING, logger="encoders"):
        kl = encoder.kl_to_prior(posterior)
        encoder.kl_to_prior(posterior)
    warnings = [record for record in caplog.records if "Monte Carlo" in record.getMessage()]
    assert len(warnings) == 1
    assert "MultivariateNormal" in warnings[0].getMessage()
    mu, var = posterior.mean, posterior.variance
    exact = 0.5 * (var + mu**2 - 1.0 - var.log()).sum(dim=-1)
    assert kl.shape == (4,)
    torch.testing.assert_close(kl, exact, rtol=0.05, atol=0.05)
    kl.sum().backward()  # the estimate is reparameterised, so it trains the encoder
    assert encoder.net.weight.grad is not None and encoder.net.weight.grad.abs().sum() > 0


def test_registered_kl_does_not_warn(caplog: pytest.LogCaptureFixture) -> None:
    encoder = MLPEncoder(context_dim=CONTEXT_DIM, latent_dim=LATENT_DIM, hidden_sizes=[8])
    with caplog.at_level(logging.WARNING, logger="encoders"):
        encoder.kl_to_prior(encoder(torch.randn(2, 3, CONTEXT_DIM)))
    assert not caplog.records


# --------------------------------------------------------------------------------------------
# Registry and EncoderError


def test_resolve_by_name_and_by_path() -> None:
    assert resolve_encoder_class("mlp") is MLPEncoder
    assert resolve_encoder_class("encoders.recurrent:GRUEncoder") is GRUEncoder


def test_unknown_name_lists_the_known_ones() -> None:
    with pytest.raises(EncoderError, match=r"unknown encoder 'mpl'") as info:
        resolve_encoder_class("mpl")
    for name in ("mlp", "deterministic", "gru", "attention"):
        assert name in str(info.value)


def test_path_that_does_not_import_names_module_and_error() -> None:
    with pytest.raises(EncoderError, match=r"no_such_module_for_pearl.*ModuleNotFoundError"):
        resolve_encoder_class("no_such_module_for_pearl:Encoder")


def test_module_that_fails_on_import_names_the_error(write_module: Callable[[str, str], str]) -> None:
    name = write_module("pearl_test_broken_module", "raise RuntimeError('boom at import')\n")
    with pytest.raises(EncoderError, match=rf"'{name}'.*RuntimeError: boom at import"):
        resolve_encoder_class(f"{name}:Encoder")


def test_missing_class_in_module_is_named() -> None:
    with pytest.raises(EncoderError, match=r"module 'encoders.mlp' has no attribute 'NoSuchEncoder'"):
        resolve_encoder_class("encoders.mlp:NoSuchEncoder")


@pytest.mark.parametrize(
    ("spec", "named"),
    [("torch.nn:Linear", "class torch.nn.modules.linear:Linear"), ("collections:OrderedDict", "OrderedDict"), ("math:pi", "float 3.14")],
)
def test_object_that_is_not_a_context_encoder_is_named(spec: str, named: str) -> None:
    with pytest.raises(EncoderError, match=r"not a subclass of encoders.ContextEncoder") as info:
        resolve_encoder_class(spec)
    assert named in str(info.value)


@pytest.mark.parametrize("spec", ["a:b:c", ":Encoder", "encoders.mlp:", "", "   "])
def test_malformed_spec(spec: str) -> None:
    with pytest.raises(EncoderError):
        resolve_encoder_class(spec)


def test_constructor_that_rejects_kwargs_names_class_and_kwargs() -> None:
    with pytest.raises(EncoderError, match=r"MLPEncoder rejected kwargs \{'hidden_size': 3\}.*hidden_sizes"):
        build_encoder("mlp", context_dim=CONTEXT_DIM, latent_dim=LATENT_DIM, kwargs={"hidden_size": 3})
    with pytest.raises(EncoderError, match=r"NeedsWidth rejected kwargs \{\}.*width"):
        encoders.registry.instantiate_encoder(NeedsWidth, context_dim=CONTEXT_DIM, latent_dim=LATENT_DIM)


def test_constructor_that_fails_names_class_and_error() -> None:
    with pytest.raises(EncoderError, match=r"MLPEncoder could not be built.*\{'min_var': -1\}.*ValueError: min_var"):
        build_encoder("mlp", context_dim=CONTEXT_DIM, latent_dim=LATENT_DIM, kwargs={"min_var": -1})


def test_kwargs_may_not_override_dimensions() -> None:
    with pytest.raises(EncoderError, match=r"must not set latent_dim"):
        build_encoder("mlp", context_dim=CONTEXT_DIM, latent_dim=LATENT_DIM, kwargs={"latent_dim": 8})


@pytest.mark.parametrize(
    ("cls", "returned"),
    [
        (MissingToEvent, r"Normal with batch_shape \(2, 3\) and event_shape \(\).*to_event"),
        (ReturnsTensor, r"a Tensor of shape \(2, 3\)"),
    ],
)
def test_wrong_output_is_reported_at_build_time(
    cls: type[ContextEncoder], returned: str, monkeypatch: pytest.MonkeyPatch, write_module: Callable[[str, str], str]
) -> None:
    module = write_module("pearl_test_wrong_output", "")
    monkeypatch.setattr(importlib.import_module(module), cls.__name__, cls, raising=False)
    with pytest.raises(EncoderError) as info:
        build_encoder(f"{module}:{cls.__name__}", context_dim=CONTEXT_DIM, latent_dim=LATENT_DIM)
    message = str(info.value)
    assert cls.__name__ in message
    assert "expected a torch.distributions.Distribution with batch_shape (2,) and event_shape (3,)" in message
    assert re.search(returned, message), message


def test_build_encoder_leaves_training_mode_and_global_rng_alone() -> None:
    encoder = MLPEncoder(context_dim=CONTEXT_DIM, latent_dim=LATENT_DIM, hidden_sizes=[8])
    state = torch.get_rng_state()
    assert registry_module.output_problem(encoder, n_tasks=2, n_transitions=3) is None
    assert torch.equal(torch.get_rng_state(), state)
    assert encoder.training


def test_duplicate_registration_is_an_error(isolated_registry: None) -> None:
    @register_encoder("pearl-test-duplicate")
    class First(_GaussianHead):
        pass

    with pytest.raises(EncoderError, match=r"'pearl-test-duplicate' is already registered"):

        @register_encoder("pearl-test-duplicate")
        class Second(_GaussianHead):
            pass

    with pytest.raises(EncoderError, match=r"already registered"):
        register_encoder("mlp")(NeedsWidth)


def test_decorator_registers_and_rejects_non_encoders(isolated_registry: None) -> None:
    @register_encoder("pearl-test-registered")
    class Registered(_GaussianHead):
        def forward(self, context: Tensor) -> Distribution:
            mu, scale = self.params(context)
            return dist.Normal(mu, scale).to_event(1)

    assert resolve_encoder_class("pearl-test-registered") is Registered
    assert "pearl-test-registered" in registered_encoders()
    with pytest.raises(EncoderError, match=r"not a subclass of encoders.ContextEncoder"):
        register_encoder("pearl-test-module")(nn.Linear)  # type: ignore[arg-type]
    with pytest.raises(EncoderError, match=r"without ':'"):
        register_encoder("a:b")


# --------------------------------------------------------------------------------------------
# Entry points


def test_entry_point_is_resolved_by_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    package = "pearl_throwaway_ep_ok"
    _fake_installed_distribution(
        tmp_path, package, f"[pearl.encoders]\nthrowaway-ok = {package}:ThrowawayEncoder\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, package, raising=False)
    assert package not in sys.modules
    cls = resolve_encoder_class("throwaway-ok")
    assert cls.__name__ == "ThrowawayEncoder" and cls.__module__ == package
    assert registered_encoders()["throwaway-ok"] is cls
    encoder = build_encoder("throwaway-ok", context_dim=CONTEXT_DIM, latent_dim=LATENT_DIM, kwargs={"scale": 0.5})
    assert check_encoder(encoder, context_dim=CONTEXT_DIM, latent_dim=LATENT_DIM).passed
    monkeypatch.delitem(sys.modules, package)


def test_broken_entry_point_names_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    package = "pearl_throwaway_ep_broken"
    _fake_installed_distribution(tmp_path, package, f"[pearl.encoders]\nthrowaway-broken = {package}:Missing\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(EncoderError, match=rf"entry point 'throwaway-broken'.*{package}.*could not be loaded"):
        resolve_encoder_class("throwaway-broken")
    monkeypatch.delitem(sys.modules, package, raising=False)


def test_entry_point_clashing_with_a_builtin_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    package = "pearl_throwaway_ep_clash"
    _fake_installed_distribution(tmp_path, package, f"[pearl.encoders]\nmlp = {package}:ThrowawayEncoder\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(EncoderError, match=r"'mlp' is registered by decorator.*also declared as entry point"):
        resolve_encoder_class("mlp")


def test_pip_installed_distribution_is_found_by_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The real thing: build and install a throwaway distribution (into a target dir, not the venv)."""
    package = "pearl_throwaway_pip"
    target = pip_install_encoder_package(tmp_path, package, THROWAWAY_SOURCE, {"throwaway-pip": "ThrowawayEncoder"})
    monkeypatch.syspath_prepend(str(target))
    monkeypatch.delitem(sys.modules, package, raising=False)
    encoder = build_encoder("throwaway-pip", context_dim=CONTEXT_DIM, latent_dim=LATENT_DIM)
    assert type(encoder).__module__ == package
    monkeypatch.delitem(sys.modules, package)


# --------------------------------------------------------------------------------------------
# The checker catches broken encoders


def _failed(report: encoders.CheckReport) -> set[str]:
    return {name for name, ok, _ in report.results if not ok}


def test_checker_catches_wrong_shape() -> None:
    report = check_encoder(MissingToEvent, context_dim=CONTEXT_DIM, latent_dim=LATENT_DIM)
    assert not report.passed
    assert "output T=1 N=1" in _failed(report)
    assert "FAIL" in str(report) and "to_event" in str(report)


def test_checker_catches_non_invariant_set_encoder() -> None:
    report = check_encoder(FirstTransitionOnly, context_dim=CONTEXT_DIM, latent_dim=LATENT_DIM)
    assert _failed(report) == {"permutation invariant"}, str(report)


def test_checker_catches_missing_gradient() -> None:
    report = check_encoder(DetachedSample, context_dim=CONTEXT_DIM, latent_dim=LATENT_DIM)
    assert "gradient" in _failed(report), str(report)


def test_checker_catches_carried_state() -> None:
    report = check_encoder(CarriesState, context_dim=CONTEXT_DIM, latent_dim=LATENT_DIM)
    assert "no carried state" in _failed(report), str(report)


def test_checker_catches_tasks_mixed_in_a_batch() -> None:
    report = check_encoder(MixesTasks, context_dim=CONTEXT_DIM, latent_dim=LATENT_DIM)
    assert _failed(report) == {"tasks independent"}, str(report)


@pytest.mark.parametrize("cls", [SplineFlow, TwoGaussians])
def test_checker_accepts_posteriors_without_closed_form_moments(cls: type[ContextEncoder]) -> None:
    torch.manual_seed(0)
    encoder = cls(context_dim=CONTEXT_DIM, latent_dim=LATENT_DIM)
    with pytest.raises(NotImplementedError):
        encoder(torch.randn(2, 3, CONTEXT_DIM)).stddev  # compared by log-density at probe points
    report = check_encoder(encoder, context_dim=CONTEXT_DIM, latent_dim=LATENT_DIM)
    assert report.passed, str(report)


@pytest.mark.parametrize(
    ("cls", "failed"),
    [(SplineFlowMixesTasks, "tasks independent"), (TwoGaussiansLastTransitionOnly, "permutation invariant")],
)
def test_checker_refuses_broken_posteriors_without_closed_form_moments(cls: type[ContextEncoder], failed: str) -> None:
    torch.manual_seed(0)
    report = check_encoder(cls, context_dim=CONTEXT_DIM, latent_dim=LATENT_DIM)
    assert _failed(report) == {failed}, str(report)
    assert "log_prob differs" in str(report)


def test_checker_probes_every_task_at_the_same_points_whatever_the_batch() -> None:
    from encoders.checker import PROBE_POINTS, _statistics

    torch.manual_seed(0)
    encoder = SplineFlow(context_dim=CONTEXT_DIM, latent_dim=LATENT_DIM)
    context = torch.randn(4, 5, CONTEXT_DIM)
    with torch.no_grad():
        batch = _statistics(encoder(context), torch.device("cpu"), torch.float32)["log_prob"]  # [4, P]
        alone = [_statistics(encoder(context[i : i + 1]), torch.device("cpu"), torch.float32)["log_prob"]
                 for i in range(4)]
    assert batch.shape == (4, PROBE_POINTS)
    torch.testing.assert_close(torch.cat(alone), batch)


def test_checker_reports_unavailable_device() -> None:
    report = check_encoder("mlp", context_dim=CONTEXT_DIM, latent_dim=LATENT_DIM, kwargs={"hidden_sizes": [8]}, device="nodevice")
    assert not report.passed and _failed(report) == {"device"}


def test_checker_does_not_modify_the_given_encoder() -> None:
    encoder = MLPEncoder(context_dim=CONTEXT_DIM, latent_dim=LATENT_DIM, hidden_sizes=[8]).eval()
    before = {name: p.clone() for name, p in encoder.state_dict().items()}
    assert check_encoder(encoder, context_dim=CONTEXT_DIM, latent_dim=LATENT_DIM).passed
    assert not encoder.training
    assert all(p.grad is None for p in encoder.parameters())
    for name, value in encoder.state_dict().items():
        assert torch.equal(value, before[name])


def test_report_is_a_readable_table() -> None:
    report = check_encoder("mlp", context_dim=CONTEXT_DIM, latent_dim=LATENT_DIM, kwargs={"hidden_sizes": [8]})
    text = str(report)
    assert text.splitlines()[0] == "check_encoder: encoders.mlp:MLPEncoder"
    assert text.splitlines()[-1] == f"PASS: {len(report.results)}/{len(report.results)} checks passed"
    assert all(line.startswith("  PASS  ") for line in text.splitlines()[1:-1])


def test_check_encoder_cli_exit_codes(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, write_module: Callable[[str, str], str]
) -> None:
    assert check_encoder_cli("mlp", context_dim=4, latent_dim=2, kwargs={"hidden_sizes": [8]}, device="cpu") == 0
    assert "PASS: " in capsys.readouterr().out

    module = write_module("pearl_test_cli_broken", "")
    monkeypatch.setattr(importlib.import_module(module), "FirstTransitionOnly", FirstTransitionOnly, raising=False)
    assert check_encoder_cli(f"{module}:FirstTransitionOnly", context_dim=4, latent_dim=2, kwargs={}, device="cpu") == 1
    assert "FAIL  permutation invariant" in capsys.readouterr().out

    assert check_encoder_cli("mpl", context_dim=4, latent_dim=2, kwargs={}, device="cpu") == 2
    captured = capsys.readouterr()
    assert "unknown encoder 'mpl'" in captured.err and captured.out == ""

    assert check_encoder_cli("mlp", context_dim=4, latent_dim=2, kwargs={"bogus": 1}, device="cpu") == 2
    assert "rejected kwargs {'bogus': 1}" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------
# The worked example and the docstring examples


def test_custom_encoder_example_passes_by_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(REPO_ROOT / "experiments" / "custom_encoder"))
    monkeypatch.delitem(sys.modules, "my_encoders", raising=False)
    kwargs = {"hidden_sizes": [32, 32]}
    encoder = build_encoder("my_encoders:MaxPoolEncoder", context_dim=CONTEXT_DIM, latent_dim=LATENT_DIM, kwargs=kwargs)
    report = check_encoder(encoder, context_dim=CONTEXT_DIM, latent_dim=LATENT_DIM)
    assert report.passed, str(report)
    monkeypatch.delitem(sys.modules, "my_encoders")


@pytest.mark.parametrize(
    "module",
    ["encoders.gaussian", "encoders.registry", "encoders.mlp", "encoders.checker", "encoders.flow", "encoders.mixture"],
)
def test_docstring_examples(module: str) -> None:
    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0
