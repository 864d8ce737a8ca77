"""The training loop's stop hook (once per step) and the patience helper shared by lightweight and versatile."""

from __future__ import annotations

import pytest
import torch

from unlearnlib.train import PatienceStop, TrainConfig, fit


def _problem(n: int = 40, batch: int = 10):
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(n, 4, generator=g), torch.randint(0, 2, (n,), generator=g)
    batches = [(x[i:i + batch], y[i:i + batch]) for i in range(0, n, batch)]
    return torch.nn.Linear(4, 2), (lambda: iter(batches))


def test_stop_hook_runs_once_per_step_even_at_epoch_ends():
    model, data = _problem()  # 4 steps per epoch; check_every 2 makes every epoch end a check step too
    seen: list[int] = []

    def stop(m, step):
        assert not m.training and not torch.is_grad_enabled()  # eval mode, no gradients
        seen.append(step)
        return False

    fit(model, data, TrainConfig(epochs=3, lr=0.1, scheduler="none"), stop=stop, check_every=2, progress=False)
    assert seen == [2, 4, 6, 8, 10, 12]  # epoch ends (4, 8, 12) are not checked twice


def test_stop_hook_checks_epoch_ends_between_check_steps():
    model, data = _problem()
    seen: list[int] = []
    fit(model, data, TrainConfig(epochs=2, lr=0.1, scheduler="none"), stop=lambda m, s: seen.append(s) or False,
        check_every=3, progress=False)
    assert seen == [3, 4, 6, 8]


def test_patience_stop_needs_consecutive_passes_and_counts_each_step_once():
    answers = iter([True, False, True, True, True])
    calls: list[int] = []

    def passes(m, step):
        calls.append(step)
        return next(answers)

    stop = PatienceStop(passes, patience=2)
    m = torch.nn.Linear(2, 2)
    assert [stop(m, s) for s in (1, 2, 3)] == [False, False, False]  # pass, fail (reset), pass
    assert stop(m, 3) is False and calls == [1, 2, 3]  # the same step again: no new check, same answer
    assert stop(m, 4) is True  # two in a row
    m.train()
    assert stop.check(m, 5) is True and m.training  # outside fit: eval mode inside, mode restored
    with pytest.raises(ValueError):
        PatienceStop(passes, patience=0)


def test_fit_ends_on_patience_stop():
    model, data = _problem()
    stop = PatienceStop(lambda m, s: s >= 4, patience=2)
    hist = fit(model, data, TrainConfig(epochs=10, lr=0.1, scheduler="none"), stop=stop, check_every=2,
               progress=False)
    assert hist.stopped_early and hist.steps == 6  # passes at 4 and 6
