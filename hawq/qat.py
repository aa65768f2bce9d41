"""Quantization-aware training for the models `apply_bits` builds (any classifier works).

    history = train_qat(qmodel, (x_train, y_train), (x_val, y_val), epochs=30, teacher=float_model,
                        distill_weight=0.5)

Adam on cross-entropy, optionally distilled from a float teacher:

    loss = (1 - a) * CE(student, y) + a * T**2 * KL(softmax(teacher / T) || softmax(student / T))

(a = distill_weight, T = temperature; the T**2 keeps the soft term's gradient scale independent
of T, as in Hinton et al. 2015). With validation data, each epoch ends with the validation loss
and accuracy; the best epoch is the one with the highest validation accuracy, ties broken by the
lower validation loss; training stops after `patience` consecutive epochs without a new best
(so after epoch best_epoch + patience) and the best weights are restored (the model's
state_dict, including Brevitas' learned scales).

Deterministic for a given seed on CPU: the seed fixes the mini-batch order (a private
torch.Generator) and torch's global RNG (dropout), forked so the caller's RNG state is
unchanged. Runs on one torch thread (tiny MLPs train fastest that way; the caller's setting is
restored).
"""

from __future__ import annotations

import copy
import math
import sys
import time
from collections.abc import Iterable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def _value(output):
    """A Brevitas QuantTensor carries its values in .value."""
    return getattr(output, "value", output)


def _as_tensors(data) -> tuple[torch.Tensor, torch.Tensor]:
    if not isinstance(data, (tuple, list)) or len(data) != 2:
        raise TypeError("data must be an (x, y) tuple of numpy arrays / tensors, or a DataLoader")
    x, y = data
    x = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x).float()
    y = torch.as_tensor(np.asarray(y) if not isinstance(y, torch.Tensor) else y).long()
    if len(x) != len(y):
        raise ValueError(f"x has {len(x)} samples but y has {len(y)}")
    if len(x) == 0:
        raise ValueError("no samples")
    return x, y


def _batches(data, batch_size: int, generator: torch.Generator | None) -> Iterable:
    """Mini-batches (x, y): shuffled with `generator` for tuples, as given for DataLoaders."""
    if isinstance(data, torch.utils.data.DataLoader):
        for x, y in data:
            yield x.float(), y.long()
        return
    x, y = data
    order = torch.randperm(len(x), generator=generator) if generator is not None else torch.arange(len(x))
    for start in range(0, len(x), batch_size):
        index = order[start:start + batch_size]
        yield x[index], y[index]


def _evaluate(model: nn.Module, data, batch_size: int) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) in eval mode."""
    was_training = model.training
    model.eval()
    total_loss, correct, count = 0.0, 0, 0
    try:
        with torch.no_grad():
            for x, y in _batches(data, max(batch_size, 1024), None):
                logits = _value(model(x))
                total_loss += float(F.cross_entropy(logits, y, reduction="sum"))
                correct += int((logits.argmax(dim=1) == y).sum())
                count += len(y)
    finally:
        model.train(was_training)
    return total_loss / count, correct / count


def accuracy(model: nn.Module, x, y) -> float:
    """Fraction of samples whose argmax logit is the label (eval mode; mode restored)."""
    return _evaluate(model, _as_tensors((x, y)), 1024)[1]


def train_qat(model: nn.Module, train_data, val_data=None, *, epochs: int = 30, lr: float = 1e-3,
              batch_size: int = 128, patience: int | None = 5, teacher: nn.Module | None = None,
              distill_weight: float = 0.0, temperature: float = 2.0, seed: int = 0,
              progress: bool = True) -> dict:
    """Train `model` in place; returns the history.

    train_data, val_data: (x, y) numpy arrays / tensors (x float features, y integer labels) or
    DataLoaders yielding (x, y). patience=None disables early stopping. Without val_data there is
    no early stopping and the final weights are kept.

    History: loss (training loss per epoch), val_loss and val_accuracy per epoch (empty without
    val_data), best_epoch (0-based; None without val_data), best_val_accuracy, best_val_loss,
    epochs_run, stopped_early, seconds. The model is left in eval mode.
    """
    if epochs < 1:
        raise ValueError(f"epochs must be at least 1, got {epochs}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    if patience is not None and patience < 1:
        raise ValueError(f"patience must be >= 1 or None, got {patience}")
    if not 0.0 <= distill_weight <= 1.0:
        raise ValueError(f"distill_weight must be in [0, 1], got {distill_weight}")
    if distill_weight > 0 and teacher is None:
        raise ValueError("distill_weight > 0 needs a teacher model")
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    from tqdm import tqdm

    if not isinstance(train_data, torch.utils.data.DataLoader):
        train_data = _as_tensors(train_data)
    if val_data is not None and not isinstance(val_data, torch.utils.data.DataLoader):
        val_data = _as_tensors(val_data)
    use_teacher = teacher is not None and distill_weight > 0
    if use_teacher:
        teacher_was_training = teacher.training
        teacher.eval()

    has_batchnorm = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    start_time = time.perf_counter()
    history = {"loss": [], "val_loss": [], "val_accuracy": [], "best_epoch": None,
               "best_val_accuracy": None, "best_val_loss": None, "epochs_run": 0, "stopped_early": False}
    try:
        with torch.random.fork_rng(devices=[]):  # the caller's global RNG is left as it was
            torch.manual_seed(seed)
            generator = torch.Generator().manual_seed(seed)
            optimizer = torch.optim.Adam(model.parameters(), lr=lr)
            best_state, best_key, since_best = None, None, 0
            bar = tqdm(range(epochs), desc="qat", unit="epoch", leave=False, file=sys.stderr, disable=not progress)
            for epoch in bar:
                model.train()
                total, count = 0.0, 0
                for x, y in _batches(train_data, batch_size, generator):
                    if len(y) < 2 and count and has_batchnorm:  # BatchNorm cannot train on one sample
                        continue
                    optimizer.zero_grad()
                    logits = _value(model(x))
                    loss = F.cross_entropy(logits, y)
                    if use_teacher:
                        with torch.no_grad():
                            soft_targets = F.log_softmax(_value(teacher(x)) / temperature, dim=1)
                        kl = F.kl_div(F.log_softmax(logits / temperature, dim=1), soft_targets,
                                      reduction="batchmean", log_target=True)
                        loss = (1 - distill_weight) * loss + distill_weight * temperature ** 2 * kl
                    loss.backward()
                    optimizer.step()
                    total += float(loss.detach()) * len(y)
                    count += len(y)
                history["loss"].append(total / max(count, 1))
                history["epochs_run"] = epoch + 1
                postfix = {"loss": f"{history['loss'][-1]:.4f}"}
                if val_data is not None:
                    val_loss, val_accuracy = _evaluate(model, val_data, batch_size)
                    history["val_loss"].append(val_loss)
                    history["val_accuracy"].append(val_accuracy)
                    postfix["val_acc"] = f"{val_accuracy:.4f}"
                    key = (val_accuracy, -val_loss)  # higher is better
                    if best_key is None or (math.isfinite(val_loss) and key > best_key):
                        best_key, since_best = key, 0
                        best_state = copy.deepcopy(model.state_dict())
                        history.update(best_epoch=epoch, best_val_accuracy=val_accuracy, best_val_loss=val_loss)
                    else:
                        since_best += 1
                bar.set_postfix(postfix)
                if patience is not None and val_data is not None and since_best >= patience:
                    history["stopped_early"] = True
                    break
            bar.close()
            if best_state is not None and history["best_epoch"] != history["epochs_run"] - 1:
                model.load_state_dict(best_state)
    finally:
        torch.set_num_threads(threads)
        if use_teacher:
            teacher.train(teacher_was_training)
    model.eval()
    history["seconds"] = time.perf_counter() - start_time
    return history
