"""A tiny training task for the training-loop tests: a 2-layer MLP (with dropout) regressing a fixed function.

It exercises every part of the loop contract: batches drawn from the step's generator, dropout (global RNG),
an ``after_step`` hook that changes weights with its generator (like a quantiser's dead-code restart) and
``extra_state``. Runnable as ``python -m tests._tiny_task --out DIR --steps N ...`` for the subprocess
(SIGKILL) and ``torchrun`` (DDP) tests.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import time
from typing import Any

import torch
from torch import nn

from training.loop import LoopConfig, train


class TinyTask:
    """``config_dict`` holds what defines the model; ``init_seed``, ``sleep`` and ``fail_at`` do not."""

    def __init__(self, hidden: int = 16, in_dim: int = 4, out_dim: int = 2, batch_size: int = 8,
                 dropout: float = 0.1, init_seed: int = 0, sleep: float = 0.0, fail_at: int | None = None):
        self.hidden, self.in_dim, self.out_dim, self.dropout = hidden, in_dim, out_dim, dropout
        self.batch_size, self.sleep, self.fail_at = batch_size, sleep, fail_at
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(init_seed)
            self.model = nn.Sequential(nn.Linear(in_dim, hidden), nn.Tanh(), nn.Dropout(dropout),
                                       nn.Linear(hidden, out_dim))
        target = torch.Generator().manual_seed(1234)
        self.proj_a = torch.randn(in_dim, 8, generator=target)
        self.proj_b = torch.randn(8, out_dim, generator=target) / 3
        self.restarts = torch.zeros((), dtype=torch.int64)

    def config_dict(self) -> dict[str, Any]:
        return {"kind": "tiny_mlp", "in_dim": self.in_dim, "hidden": self.hidden, "out_dim": self.out_dim,
                "dropout": self.dropout}

    def training_step(self, model: nn.Module, step: int,
                      generator: torch.Generator) -> tuple[torch.Tensor, dict[str, float]]:
        if self.fail_at is not None and step == self.fail_at:
            raise RuntimeError(f"simulated crash at step {step}")
        if self.sleep:
            time.sleep(self.sleep)
        x = torch.randn(self.batch_size, self.in_dim, generator=generator)
        y = torch.sin(x @ self.proj_a) @ self.proj_b
        device = next(model.parameters()).device
        loss = nn.functional.mse_loss(model(x.to(device)), y.to(device))
        return loss, {"batch_mean": float(y.mean())}

    def after_step(self, step: int, generator: torch.Generator) -> None:
        """Every 7th step nudge one random hidden bias, like a dead-code restart (same on every rank)."""
        if (step + 1) % 7 == 0:
            index = int(torch.randint(self.hidden, (1,), generator=generator))
            with torch.no_grad():
                self.model[0].bias[index] += 0.01 * torch.randn((), generator=generator).item()
            self.restarts += 1

    def extra_state(self) -> dict[str, torch.Tensor]:
        return {"restarts": self.restarts}

    def load_extra_state(self, tensors: dict[str, torch.Tensor]) -> None:
        self.restarts = tensors["restarts"].clone()


def weights_hash(model: nn.Module) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", required=True)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--ckpt-every", type=int, default=10)
    parser.add_argument("--log-every", type=int, default=5)
    parser.add_argument("--hidden", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sleep", type=float, default=0.0, help="seconds per step, to be killable mid-run")
    parser.add_argument("--hash-dir", help="every rank writes rank{N}.sha256 of its final weights here")
    args = parser.parse_args(argv)
    task = TinyTask(hidden=args.hidden, sleep=args.sleep)
    cfg = LoopConfig(out_dir=args.out, total_steps=args.steps, batch_size=task.batch_size, lr=1e-2,
                     warmup_steps=5, ckpt_every=args.ckpt_every, log_every=args.log_every, seed=args.seed,
                     progress=False)
    train(task, cfg)
    if args.hash_dir:
        rank = int(os.environ.get("RANK", "0"))
        with open(os.path.join(args.hash_dir, f"rank{rank}.sha256"), "w") as handle:
            handle.write(weights_hash(task.model))


if __name__ == "__main__":
    main()
