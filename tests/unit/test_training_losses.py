"""The training objectives on tiny tensors: masked cross-entropy, sequence log-probabilities, DPO."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from llmops.training.trainer.loop import dpo_loss, sequence_logps, sft_loss


def test_dpo_loss_values() -> None:
    # Policy equal to the reference: the margin is 0 and the loss is log 2.
    zero = torch.tensor([-5.0])
    assert dpo_loss(zero, zero - 1, zero, zero - 1, beta=0.1).item() == pytest.approx(math.log(2), abs=1e-6)
    # (pc - rc) - (pr - rr) = (-1 + 2) - (-3 + 2) = 2; beta 0.5 -> -logsigmoid(1) = log(1 + e^-1).
    loss = dpo_loss(
        torch.tensor([-1.0]), torch.tensor([-3.0]), torch.tensor([-2.0]), torch.tensor([-2.0]), 0.5
    )
    assert loss.item() == pytest.approx(math.log(1 + math.exp(-1)), abs=1e-6)
    # Preferring the rejected answer costs more than preferring the chosen one.
    worse = dpo_loss(
        torch.tensor([-3.0]), torch.tensor([-1.0]), torch.tensor([-2.0]), torch.tensor([-2.0]), 0.5
    )
    assert worse.item() == pytest.approx(math.log(1 + math.exp(1)), abs=1e-6)


def test_dpo_gradient_raises_chosen_and_lowers_rejected() -> None:
    chosen = torch.tensor([-2.0], requires_grad=True)
    rejected = torch.tensor([-2.0], requires_grad=True)
    dpo_loss(chosen, rejected, torch.tensor([-2.0]), torch.tensor([-2.0]), beta=0.1).sum().backward()
    assert chosen.grad.item() < 0 < rejected.grad.item()
    # d/dpc of -logsigmoid(beta * m) at m = 0 is -beta / 2.
    assert chosen.grad.item() == pytest.approx(-0.05, abs=1e-6)


def test_sequence_logps_sums_only_answer_tokens() -> None:
    torch.manual_seed(0)
    logits = torch.randn(2, 4, 5)
    labels = torch.tensor([[-100, -100, 3, 1], [-100, 2, 4, -100]])
    got = sequence_logps(logits, labels)
    logp = logits.log_softmax(-1)
    # Token t is predicted by the logits at t - 1.
    want0 = logp[0, 1, 3] + logp[0, 2, 1]
    want1 = logp[1, 0, 2] + logp[1, 1, 4]
    assert torch.allclose(got, torch.stack([want0, want1]))


def test_sft_loss_ignores_masked_positions() -> None:
    torch.manual_seed(1)
    logits = torch.randn(1, 5, 7)
    labels = torch.tensor([[-100, -100, 4, 2, -100]])
    want = F.cross_entropy(logits[0, 1:3], torch.tensor([4, 2]))
    assert sft_loss(logits, labels).item() == pytest.approx(want.item(), abs=1e-6)
    # Changing the logits of positions without a target does not change the loss.
    changed = logits.clone()
    changed[0, 0] += 100
    changed[0, 3:] -= 100
    assert sft_loss(changed, labels).item() == pytest.approx(want.item(), abs=1e-6)
    # A batch without answer tokens gives 0, not NaN.
    assert sft_loss(logits, torch.full((1, 5), -100)).item() == 0.0
