"""The training loop of the engines that train a network with a label head (fine-tuned `embed`, `head`).

AdamW over parameter groups (each with its own learning rate), a linear warmup then linear decay,
batches drawn in a seeded random order every epoch, gradient accumulation over micro-batches,
gradient clipping, a progress bar with the loss, and (given an eval loss) the weights of the best
epoch on eval restored at the end. The `lora` engine keeps its own loop: it runs under `accelerate`
(data-parallel launches, mixed precision) and stops early with a patience counter.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any


def linear_schedule(warmup: int, total: int, offset: int = 0) -> Callable[[int], float]:
    """The learning-rate multiplier at step s: up linearly over `warmup` steps, then down to 0 at `total`
    (transformers' get_linear_schedule_with_warmup; offset=1 starts the ramp at 1/warmup, not 0)."""

    def multiplier(step: int) -> float:
        if step < warmup:
            return (step + offset) / max(1, warmup)
        return max(0.0, (total - step) / max(1, total - warmup))

    return multiplier


@dataclass
class LoopResult:
    steps: int
    history: list[dict[str, Any]]  # per step: train_loss, and eval_loss at the end of each epoch
    best_eval_loss: float | None  # the restored weights' eval loss


def bfloat16_products(device: str | None):
    """A context in which the matrix products on `device` ("cuda" or "cpu") run in bfloat16, the weights
    staying as they are; None: a context that changes nothing."""
    import torch

    return torch.autocast(device or "cpu", dtype=torch.bfloat16, enabled=device is not None)


def train_loop(
    param_groups: Sequence[dict[str, Any]],
    examples: int,
    loss_of: Callable[[list[int]], Any],
    *,
    seed: int,
    steps: int,
    batch_size: int,
    micro_batch_size: int = 0,
    weight_decay: float = 0.0,
    warmup_ratio: float = 0.0,
    warmup_offset: int = 0,
    clip: Iterable[Any] | None = None,
    autocast: str | None = None,
    eval_loss: Callable[[], float] | None = None,
    snapshot: Callable[[], Any] | None = None,
    restore: Callable[[Any], None] | None = None,
    desc: str = "training",
) -> LoopResult:
    """Trains for `steps` optimizer steps of `batch_size` examples, a new random order of the `examples`
    each epoch. `loss_of(indices)` returns the mean loss of those examples; `eval_loss()` is measured at the end of each epoch, and with
    `snapshot`/`restore` the best epoch's weights come back at the end."""
    import torch
    from tqdm.auto import tqdm

    micro = micro_batch_size or batch_size
    total = max(1, steps)
    optimizer = torch.optim.AdamW(list(param_groups), weight_decay=weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, linear_schedule(int(total * warmup_ratio), total, warmup_offset))
    clip = list(clip) if clip is not None else [p for group in optimizer.param_groups for p in group["params"]]
    generator = torch.Generator().manual_seed(seed)
    autocast_context = bfloat16_products(autocast)  # the weights and their updates stay float32
    history: list[dict[str, Any]] = []
    best_loss, best_state, step = math.inf, None, 0
    bar = tqdm(total=total, desc=desc, unit="step", file=sys.stderr, disable=None)
    while step < total:
        order = torch.randperm(examples, generator=generator).tolist()
        for start in range(0, examples, batch_size):
            batch = order[start : start + batch_size]
            running = 0.0
            for m in range(0, len(batch), micro):
                part = batch[m : m + micro]
                with autocast_context:
                    loss = loss_of(part)
                (loss * len(part) / len(batch)).backward()
                running += loss.item() * len(part) / len(batch)
            torch.nn.utils.clip_grad_norm_(clip, 1.0)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad()
            step += 1
            record: dict[str, Any] = {"step": step, "train_loss": round(running, 5)}
            if eval_loss is not None and (start + batch_size >= examples or step == total):  # each epoch's end
                record["eval_loss"] = round(eval_loss(), 5)
                if record["eval_loss"] < best_loss - 1e-4:
                    best_loss = record["eval_loss"]
                    best_state = snapshot() if snapshot else None
            history.append(record)
            bar.set_postfix(loss=f"{running:.4f}", refresh=False)
            bar.update()
            if step >= total:
                break
    bar.close()
    if best_state is not None and restore is not None:
        restore(best_state)
    return LoopResult(step, history, None if best_loss == math.inf else round(best_loss, 5))
