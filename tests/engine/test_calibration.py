"""Temperature scaling on made-up logits: the fitted T against an independent optimiser, the ECE by hand."""

import pytest
import torch

from cvrun.engine.calibration import LOG_T_BOUNDS, ConfidenceBins, fit_temperature, nll


def made_up(scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """1,000 five-class logits that favour the true class, multiplied by `scale` (over-confident above about 1)."""
    generator = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 5, (1000,), generator=generator)
    logits = torch.randn(1000, 5, generator=generator) * 2
    logits[torch.arange(1000), labels] += 2
    return logits * scale, labels


def lbfgs_temperature(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """The NLL-minimising T found another way: torch's L-BFGS on log T."""
    log_t = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    optimiser = torch.optim.LBFGS([log_t], lr=0.5, max_iter=200, line_search_fn="strong_wolfe")

    def closure():
        optimiser.zero_grad()
        loss = torch.nn.functional.cross_entropy(logits.double() / log_t.exp(), labels)
        loss.backward()
        return loss

    optimiser.step(closure)
    return log_t.exp().item()


@pytest.mark.parametrize("scale", [0.3, 4.0])
def test_the_fitted_temperature_is_the_one_lbfgs_finds(scale):
    logits, labels = made_up(scale)
    temperature = fit_temperature(logits, labels)
    assert temperature == pytest.approx(lbfgs_temperature(logits, labels), rel=1e-3)
    assert (temperature > 1) == (scale > 1.5)
    assert nll(logits, labels, temperature) < nll(logits, labels)


def test_logits_that_say_nothing_stop_at_the_bound():
    """Labels unrelated to the logits: the NLL falls all the way to the uniform guess, T ends at its bound."""
    generator = torch.Generator().manual_seed(1)
    logits, labels = torch.randn(500, 4, generator=generator), torch.randint(0, 4, (500,), generator=generator)
    assert fit_temperature(logits, labels) == pytest.approx(torch.tensor(LOG_T_BOUNDS[1]).exp().item(), rel=1e-4)


def test_ece_by_hand_and_summed_over_batches():
    """Four images at 0.9 (two right) and two at 0.5 (one right): ECE = 4/6 x 0.4 + 2/6 x 0 = 26.67%."""
    probs = torch.tensor([[0.9, 0.1]] * 4 + [[0.5, 0.5]] * 2)
    labels = torch.tensor([0, 0, 1, 1, 0, 1])
    bins = ConfidenceBins()
    bins.add(probs[:3], labels[:3])
    bins.add(probs[3:], labels[3:])
    assert bins.ece() == pytest.approx(100 * 4 / 6 * 0.4)
    assert [(row["count"], row["confidence"], row["accuracy"]) for row in bins.table()] == [
        (2, pytest.approx(0.5), pytest.approx(0.5)), (4, pytest.approx(0.9), pytest.approx(0.5))]
