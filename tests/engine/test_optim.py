import pytest
import torch
from timm.optim import Lamb

from cvrun.engine.optim import OPTIMIZERS, build_optimizer
from cvrun.errors import UserError
from tests.conftest import make_cfg


def _optimizer(params, **optim):
    return build_optimizer([{"params": params}], make_cfg(optim=optim).optim, torch.device("cpu"))


def test_sgd_and_adamw_settings():
    param = torch.nn.Parameter(torch.zeros(1))
    sgd = _optimizer([param])
    assert isinstance(sgd, torch.optim.SGD) and sgd.defaults["nesterov"] and sgd.defaults["momentum"] == 0.9
    adamw = _optimizer([param], name="adamw", lr=1e-3)
    assert isinstance(adamw, torch.optim.AdamW)


def test_adam_and_lamb_are_torchs_and_timms_with_their_settings():
    param = torch.nn.Parameter(torch.zeros(1))
    adam = _optimizer([param], name="adam", lr=1e-3, betas=[0.8, 0.99], weight_decay=1e-4)
    assert type(adam) is torch.optim.Adam
    assert adam.defaults["betas"] == (0.8, 0.99) and adam.defaults["weight_decay"] == 1e-4
    lamb = _optimizer([param], name="lamb", lr=5e-3, max_grad_norm=None)
    assert isinstance(lamb, Lamb) and lamb.defaults["lr"] == 5e-3 and lamb.defaults["max_grad_norm"] is None


def test_adam_decays_the_weights_through_the_gradient_and_adamw_beside_it():
    # Adam's L2 term joins the gradient and is normalised with it: with a zero loss gradient the first step
    # is lr x sign(w), whatever the decay. AdamW's decay is lr x wd x w, apart from the gradient's step.
    results = {}
    for name in ("adam", "adamw"):
        weight = torch.nn.Parameter(torch.full((3,), 2.0))
        optimizer = _optimizer([weight], name=name, lr=0.1, weight_decay=0.5)
        weight.grad = torch.zeros(3)
        optimizer.step()
        results[name] = weight.detach()
    assert results["adam"] == pytest.approx(torch.full((3,), 2.0 - 0.1))
    assert results["adamw"] == pytest.approx(torch.full((3,), 2.0 * (1 - 0.1 * 0.5)))


def test_lamb_scales_each_layers_step_to_its_weights_norm():
    # LAMB's trust ratio: a layer's update has norm lr x ||w||, however large or small its gradient (timm
    # applies it to the layers that decay, so a tiny decay).
    torch.manual_seed(0)
    big, small = torch.nn.Parameter(torch.randn(20) * 5), torch.nn.Parameter(torch.randn(20) * 0.1)
    before = [big.detach().clone(), small.detach().clone()]
    optimizer = _optimizer([big, small], name="lamb", lr=0.01, weight_decay=1e-9, max_grad_norm=None)
    big.grad, small.grad = torch.randn(20) * 100, torch.randn(20) * 1e-3
    optimizer.step()
    for param, start in zip((big, small), before):
        assert (param.detach() - start).norm() == pytest.approx(0.01 * start.norm(), rel=1e-3)


@pytest.mark.parametrize("name, lr", [("sgd", 0.1), ("adamw", 0.01), ("adam", 0.01), ("lamb", 0.01)])
def test_every_optimiser_fits_a_small_problem(name, lr):
    torch.manual_seed(0)
    inputs = torch.randn(256, 8)
    labels = (inputs[:, 0] + inputs[:, 1] > 0).long()
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))
    optimizer = _optimizer(list(model.parameters()), name=name, lr=lr, weight_decay=0.0)
    for _ in range(100):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(inputs), labels).backward()
        optimizer.step()
    assert (model(inputs).argmax(1) == labels).float().mean() > 0.95


def test_every_optimiser_has_a_schema_and_another_ones_key_is_refused():
    assert set(OPTIMIZERS.names()) >= {"sgd", "adamw", "adam", "lamb"}
    with pytest.raises(UserError, match=r"unknown config key 'optim.betas'; optim=sgd takes lr, weight_decay, "
                                        r"momentum, nesterov"):
        make_cfg(optim={"name": "sgd", "betas": [0.9, 0.99]})
    with pytest.raises(UserError, match=r"optim.betas must be two values in \[0, 1\)"):
        make_cfg(optim={"name": "adam", "betas": [0.9]})
