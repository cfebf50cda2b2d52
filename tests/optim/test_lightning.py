"""The torch.optim-style classes under PyTorch Lightning, and the torch.optim contract it uses.

The first tests check, with plain PyTorch, what Lightning relies on: a ``torch.optim.lr_scheduler``
scheduler changes the learning rate a step uses, and assigning an entry of ``state[p]`` (how
Lightning moves optimizer state between devices) reaches the optimizer's state. The tests after
them run a real ``lightning.Trainer`` on CPU when ``lightning`` is installed (the ``test-extra``
dependencies); without it they are skipped.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import torch

import torchopt_lite

pytestmark = pytest.mark.filterwarnings(
    # Lightning 2.6 calls torch.utils._pytree.LeafSpec, which PyTorch 2.13 deprecates: a warning
    # about Lightning's code, raised in every fit, not about the optimizer.
    "ignore:`isinstance\\(treespec, LeafSpec\\)` is deprecated:FutureWarning"
)

RTOL, ATOL = 1e-12, 1e-15  # the same float64 math on both sides; only roundings may differ


def _params() -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    return [torch.randn(3, 2, generator=gen, dtype=torch.float64).requires_grad_(True)]


def _grads(steps: int) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    return [torch.randn(3, 2, generator=gen, dtype=torch.float64) for _ in range(steps)]


def _run_with_step_lr(opt: torch.optim.Optimizer, p: torch.Tensor) -> list[torch.Tensor]:
    scheduler = torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.1)
    out = []
    for g in _grads(6):
        p.grad = g.clone()
        opt.step()
        scheduler.step()
        out.append(p.detach().clone())
    return out


@pytest.mark.parametrize("tensor_lr", [False, True], ids=["float-lr", "tensor-lr"])
@pytest.mark.parametrize(
    ("ours", "theirs", "kwargs"),
    [
        (torchopt_lite.SGD, torch.optim.SGD, {"momentum": 0.9}),
        (torchopt_lite.Adam, torch.optim.Adam, {}),
    ],
    ids=["SGD", "Adam"],
)
def test_step_lr_changes_the_learning_rate_a_step_uses(
    ours: Any, theirs: Any, kwargs: dict, tensor_lr: bool
) -> None:
    """StepLR writes ``group["lr"]`` (a tensor lr in place, with ``fill_``); steps follow it."""

    def lr() -> Any:
        return torch.tensor(0.1, dtype=torch.float64) if tensor_lr else 0.1

    (p,) = _params()
    expected = _run_with_step_lr(theirs([p], lr=lr(), **kwargs), p)
    (q,) = _params()
    got = _run_with_step_lr(ours([q], lr=lr(), **kwargs), q)
    for a, b in zip(got, expected, strict=True):
        torch.testing.assert_close(a, b, rtol=RTOL, atol=ATOL)
    steps = [b - a for a, b in zip([_params()[0].detach(), *expected], expected, strict=False)]
    assert steps[2].abs().max() < 0.5 * steps[1].abs().max()  # the lr did drop after 2 steps


def _stepped_adam(cls: Any) -> tuple[torch.optim.Optimizer, list[torch.Tensor]]:
    ps = [*_params(), torch.ones(2, dtype=torch.float64, requires_grad=True)]
    opt = cls(ps, lr=0.1)
    for g in _grads(2):
        ps[0].grad, ps[1].grad = g.clone(), torch.ones(2, dtype=torch.float64)
        opt.step()
    return opt, ps


def test_assigning_state_entries_reaches_the_step() -> None:
    """``state[p][key] = tensor`` changes the next step as it does for ``torch.optim.Adam``."""
    results = []
    for cls, names in [(torchopt_lite.Adam, ("mu", "count")), (torch.optim.Adam, ("exp_avg",))]:
        opt, ps = _stepped_adam(cls)
        opt.state[ps[0]][names[0]] = torch.full((3, 2), 0.5, dtype=torch.float64)
        if cls is torchopt_lite.Adam:
            opt.state[ps[0]]["count"] = torch.tensor(10)  # one count per group
            assert int(opt.state[ps[1]]["count"]) == 10
            assert torch.equal(opt.state[ps[0]]["mu"], torch.full((3, 2), 0.5).double())
        else:
            for p in ps:
                opt.state[p]["step"] = torch.tensor(10.0)
        ps[0].grad, ps[1].grad = _grads(3)[2].clone(), torch.ones(2, dtype=torch.float64)
        opt.step()
        results.append([p.detach().clone() for p in ps])
    for a, b in zip(*results, strict=True):
        torch.testing.assert_close(a, b, rtol=RTOL, atol=ATOL)


def test_moving_state_entries_as_lightning_does() -> None:
    """Lightning's teardown assigns every entry moved to another device; the move persists."""
    opt, _ = _stepped_adam(torchopt_lite.Adam)
    for v in opt.state.values():
        for key, value in v.items():
            v[key] = value.to("meta")
    assert {t.device.type for v in opt.state.values() for t in v.values()} == {"meta"}
    assert {t.device.type for t in opt.state_dict()["state"][0].values()} == {"meta"}


def test_state_copies_and_state_dicts_are_plain_dicts() -> None:
    opt, ps = _stepped_adam(torchopt_lite.Adam)
    assert type(copy.deepcopy(opt.state)[ps[0]]) is dict
    assert {type(v) for v in opt.state_dict()["state"].values()} == {dict}


@pytest.mark.parametrize(
    ("key", "value", "error", "match"),
    [
        ("exp_avg", torch.zeros(3, 2), ValueError, r"'exp_avg' is not a state entry of this opt"),
        ("mu", torch.zeros(2, 3), ValueError, r"entry 'mu' has shape \(3, 2\); got \(2, 3\)"),
        ("count", 3, TypeError, r"entry 'count' must be a tensor; got int"),
    ],
)
def test_assigning_a_bad_state_entry_changes_nothing(
    key: str, value: Any, error: type, match: str
) -> None:
    opt, ps = _stepped_adam(torchopt_lite.Adam)
    before = copy.deepcopy(opt.state_dict())
    with pytest.raises(error, match=match):
        opt.state[ps[0]][key] = value
    after = opt.state_dict()
    for i, entries in before["state"].items():
        for k, v in entries.items():
            assert torch.equal(after["state"][i][k], v)


# -- a real lightning.Trainer --------------------------------------------------------------------

BATCHES, BATCH_SIZE = 4, 4


@pytest.fixture
def lightning() -> Any:
    return pytest.importorskip("lightning")


def _data() -> torch.utils.data.DataLoader:
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(BATCHES * BATCH_SIZE, 3, generator=gen, dtype=torch.float64)
    y = torch.randn(BATCHES * BATCH_SIZE, 1, generator=gen, dtype=torch.float64)
    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=BATCH_SIZE)


def _net() -> torch.nn.Module:
    torch.manual_seed(3)
    return torch.nn.Linear(3, 1, dtype=torch.float64)


def _module(lightning: Any, *, manual: bool) -> Any:
    class Regression(lightning.LightningModule):  # type: ignore[misc, name-defined]
        def __init__(self) -> None:
            super().__init__()
            self.net = _net()
            self.automatic_optimization = not manual
            self.lrs: list[float] = []

        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            x, y = batch
            loss = torch.nn.functional.mse_loss(self.net(x), y)
            self.lrs.append(self.optimizers().param_groups[0]["lr"])
            if manual:
                opt = self.optimizers()
                opt.zero_grad()
                self.manual_backward(loss)
                opt.step()
                self.lr_schedulers().step()
            return loss

        def configure_optimizers(self) -> Any:
            opt = torchopt_lite.Adam(self.parameters(), lr=0.1)
            scheduler = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
            return {"optimizer": opt, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    return Regression()


def _trainer(lightning: Any, root: Path, **kwargs: Any) -> Any:
    return lightning.Trainer(
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=root,
        **kwargs,
    )


def _plain_loop(epochs: int) -> torch.nn.Module:
    """The same training with torch.optim.Adam and StepLR, without Lightning."""
    net = _net()
    opt = torch.optim.Adam(net.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    for _ in range(epochs):
        for x, y in _data():
            opt.zero_grad()
            torch.nn.functional.mse_loss(net(x), y).backward()
            opt.step()
            scheduler.step()
    return net


def _assert_same_parameters(a: torch.nn.Module, b: torch.nn.Module) -> None:
    for (name, x), y in zip(a.named_parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(x.detach(), y.detach(), rtol=RTOL, atol=ATOL, msg=name)


MODES = pytest.mark.parametrize("manual", [False, True], ids=["automatic", "manual"])


@MODES
def test_fast_dev_run(lightning: Any, tmp_path: Path, manual: bool) -> None:
    module = _module(lightning, manual=manual)
    before = [p.detach().clone() for p in module.parameters()]
    trainer = _trainer(lightning, tmp_path, fast_dev_run=2)
    trainer.fit(module, _data())
    (opt,) = trainer.optimizers
    assert isinstance(opt, torchopt_lite.Adam)
    assert int(opt.state[module.net.weight]["count"]) == 2
    assert module.lrs == [0.1, 0.05]
    assert all(not torch.equal(p, q) for p, q in zip(module.parameters(), before, strict=True))


@MODES
def test_fit_follows_the_scheduler_as_torch_optim_does(
    lightning: Any, tmp_path: Path, manual: bool
) -> None:
    """The fitted weights are those of torch.optim.Adam + StepLR: each step used its lr."""
    module = _module(lightning, manual=manual)
    trainer = _trainer(lightning, tmp_path, max_epochs=2)
    trainer.fit(module, _data())
    assert module.lrs == [0.1 * 0.5**k for k in range(2 * BATCHES)]
    _assert_same_parameters(module.net, _plain_loop(epochs=2))


@MODES
def test_resume_from_checkpoint_equals_an_uninterrupted_fit(
    lightning: Any, tmp_path: Path, manual: bool
) -> None:
    checkpoint = tmp_path / "epoch1.ckpt"
    trainer = _trainer(lightning, tmp_path, max_epochs=1)
    trainer.fit(_module(lightning, manual=manual), _data())
    trainer.save_checkpoint(checkpoint)

    resumed = _module(lightning, manual=manual)
    trainer = _trainer(lightning, tmp_path, max_epochs=2)
    trainer.fit(resumed, _data(), ckpt_path=checkpoint)
    (opt,) = trainer.optimizers
    assert int(opt.state[resumed.net.weight]["count"]) == 2 * BATCHES
    assert resumed.lrs == [0.1 * 0.5**k for k in range(BATCHES, 2 * BATCHES)]

    uninterrupted = _module(lightning, manual=manual)
    _trainer(lightning, tmp_path, max_epochs=2).fit(uninterrupted, _data())
    _assert_same_parameters(resumed.net, uninterrupted.net)
    _assert_same_parameters(resumed.net, _plain_loop(epochs=2))


def test_lightning_moves_the_state_between_devices(lightning: Any) -> None:
    """Lightning's own helper (used at teardown and after a restore) moves the state."""
    from lightning.fabric.utilities.optimizer import _optimizer_to_device

    opt, _ = _stepped_adam(torchopt_lite.Adam)
    _optimizer_to_device(opt, torch.device("meta"))
    assert {t.device.type for v in opt.state.values() for t in v.values()} == {"meta"}
