"""The training loop shared by the fine-tuned embed and head engines."""

from __future__ import annotations

import pytest

from issuelab.engines.torch_loop import linear_schedule, train_loop

pytestmark = pytest.mark.torch


def test_linear_schedule_warms_up_then_decays_to_zero():
    plain = linear_schedule(warmup=4, total=12)
    assert [plain(s) for s in (0, 2, 4, 8, 12, 13)] == [0.0, 0.5, 1.0, 0.5, 0.0, 0.0]
    early = linear_schedule(warmup=4, total=12, offset=1)  # the first step already learns
    assert [early(s) for s in (0, 3, 4)] == [0.25, 1.0, 1.0]
    assert linear_schedule(warmup=0, total=10)(0) == 1.0


def test_the_loop_learns_counts_steps_and_restores_the_best_epoch():
    import torch

    torch.manual_seed(0)
    x = torch.randn(40, 3)
    y = x @ torch.tensor([1.0, -2.0, 0.5])
    weight = torch.nn.Parameter(torch.zeros(3))
    losses = []

    def loss_of(batch):
        return ((x[batch] @ weight - y[batch]) ** 2).mean()

    def eval_loss():  # pretends the second epoch was the best one
        losses.append(float(loss_of(list(range(40)))))
        return [5.0, 1.0, 3.0][len(losses) - 1]

    initial = float(loss_of(list(range(40))))
    snapshots = []
    result = train_loop(
        [{"params": [weight], "lr": 0.1}], 40, loss_of, seed=0, steps=15, batch_size=8, micro_batch_size=4,
        eval_loss=eval_loss, snapshot=lambda: snapshots.append(weight.detach().clone()) or len(snapshots) - 1,
        restore=lambda k: weight.data.copy_(snapshots[k]),
    )  # fmt: skip
    assert result.steps == 15 and len(result.history) == 15
    assert [r["step"] for r in result.history if "eval_loss" in r] == [5, 10, 15]  # each epoch's end
    assert result.best_eval_loss == 1.0 and torch.equal(weight.detach(), snapshots[1])  # epoch 2's weights came back
    assert losses[1] < 0.5 * initial  # it learned


@pytest.mark.parametrize("autocast", [None, "cpu"])
def test_autocast_runs_the_products_in_bfloat16_and_keeps_the_weights_float32(autocast):
    import torch

    torch.manual_seed(0)
    x = torch.randn(16, 4)
    y = x @ torch.tensor([1.0, -2.0, 0.5, 3.0])
    layer = torch.nn.Linear(4, 1)
    seen = []

    def loss_of(batch):
        out = layer(x[batch]).squeeze(-1)
        seen.append(out.dtype)
        return ((out.float() - y[batch]) ** 2).mean()

    initial = float(loss_of(list(range(16))))
    seen.clear()
    train_loop([{"params": layer.parameters(), "lr": 0.05}], 16, loss_of, seed=0, steps=40, batch_size=8, autocast=autocast)
    assert set(seen) == {torch.bfloat16 if autocast else torch.float32}
    assert layer.weight.dtype == torch.float32 and layer.weight.grad is None  # updated in float32, gradients cleared
    assert float(loss_of(list(range(16)))) < 0.5 * initial  # it learned through the bfloat16 products
