"""Your own models, a standard DataLoader, and mcmi: the plug-and-play path of the paper.

1. a small CNN teacher, a plain ``nn.Module`` (no mcmi model zoo), trained with cross-entropy in
   a plain PyTorch loop;
2. its CMI and log-likelihood, measured with ``mcmi.evaluate``;
3. MCMI fine-tuning (maximize LL + lambda * CMI, eq. 14 of the paper) in the same plain loop:
   ``MCMI(teacher).prepare(loader)`` computes the class centroids, ``objective((x, y)).total`` is
   the loss;
4. the fine-tuned teacher distilled into a small student with KD (logits: plain modules as they
   are), AT and CRD (features: both models through ``mcmi.wrap``'s forward hooks).

Data: 500 training and 300 test images of the bundled ``cifar10-partial`` archive (found in
``../shared/data`` or ``$MCMI_SHARED_DATA``), as tensors in a ``TensorDataset``, so every batch
is an ``(x, y)`` tuple (``(x, y, index)`` for CRD). Runs in seconds on 2 CPU cores; the numbers
are those of a few epochs on a few hundred images, a demonstration, not a result.

    python examples/own_models.py
"""
from __future__ import annotations

import time

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import mcmi
from mcmi.data import dataset_stats, load_dataset
from mcmi.methods import KD, MCMI
from mcmi.methods.at import AT
from mcmi.methods.crd import CRD

DATA, CLASSES = "cifar10-partial", 10
STAGES = ["layer1", "layer2", "layer3"]  # names as in model.named_modules()


def conv_bn_relu(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out),
                         nn.ReLU())


class SmallCNN(nn.Module):
    """Any CNN will do: mcmi only needs the names of a few submodules to tap."""

    def __init__(self, widths: tuple[int, int, int], num_classes: int = CLASSES) -> None:
        super().__init__()
        self.stem = conv_bn_relu(3, widths[0])
        self.layer1 = conv_bn_relu(widths[0], widths[0])
        self.layer2 = conv_bn_relu(widths[0], widths[1], stride=2)
        self.layer3 = conv_bn_relu(widths[1], widths[2], stride=2)
        self.fc = nn.Linear(widths[2], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer3(self.layer2(self.layer1(self.stem(x))))
        return self.fc(x.mean(dim=(2, 3)))


def teacher_cnn() -> SmallCNN:
    return SmallCNN((16, 32, 64))


def student_cnn() -> SmallCNN:
    return SmallCNN((8, 16, 32))


def tensors(split: str, per_class: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``per_class`` images of each class, as normalized float tensors."""
    ds = load_dataset(DATA, split)
    keep = torch.cat([torch.nonzero(ds.labels == c).flatten()[:per_class] for c in range(CLASSES)])
    stats = dataset_stats(DATA)
    mean, std = torch.tensor(stats.mean)[:, None, None], torch.tensor(stats.std)[:, None, None]
    return (ds.images[keep].float() / 255 - mean) / std, ds.labels[keep]


def fit(step, params, loader: DataLoader, epochs: int, lr: float) -> None:
    """A plain PyTorch loop: ``step(batch)`` returns the loss of one batch."""
    opt = torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=5e-4)
    for _ in range(epochs):
        for batch in loader:
            loss = step(batch)
            opt.zero_grad()
            loss.backward()
            opt.step()


def main() -> None:
    t0 = time.perf_counter()
    torch.manual_seed(0)
    x, y = tensors("train", per_class=50)
    xt, yt = tensors("test", per_class=30)
    g = torch.Generator().manual_seed(0)
    train = DataLoader(TensorDataset(x, y), batch_size=50, shuffle=True, generator=g)
    train_idx = DataLoader(TensorDataset(x, y, torch.arange(len(x))), batch_size=50,
                           shuffle=True, generator=g)  # (x, y, index): CRD's memory bank
    test = DataLoader(TensorDataset(xt, yt), batch_size=150)
    table = []  # (name, mcmi.metrics.EvalResult)

    # 1. the teacher: cross-entropy in a plain loop (MLL, eq. 5)
    teacher = teacher_cnn()
    teacher.train()
    ce = nn.CrossEntropyLoss()
    fit(lambda b: ce(teacher(b[0]), b[1]), teacher.parameters(), train, epochs=6, lr=0.05)
    table.append(("teacher, cross-entropy", mcmi.evaluate(teacher, test, CLASSES)))

    # 2. MCMI fine-tuning: the paper's objective, still a plain loop
    objective = MCMI(teacher, lam=0.5)  # num_classes from the last nn.Linear (fc)
    bn_before = {k: v.clone() for k, v in teacher.named_buffers()}
    objective.prepare(train)  # class centroids Q^y, train-mode outputs as in the paper's code
    untouched = all(torch.equal(v, dict(teacher.named_buffers())[k]) for k, v in bn_before.items())
    objective.train()
    fit(lambda b: objective(b).total, objective.trainable_parameters(), train, epochs=3, lr=0.01)
    table.append(("teacher, MCMI fine-tuned", mcmi.evaluate(teacher, test, CLASSES)))

    # 3. students: KD on the plain modules, AT and CRD on hook-wrapped ones
    wrapped_teacher = mcmi.wrap(teacher, stages=STAGES, classifier="fc")
    students = {
        "student, KD": lambda s: KD(s, teacher),
        "student, AT": lambda s: AT(mcmi.wrap(s, stages=STAGES, classifier="fc"), wrapped_teacher),
        "student, CRD": lambda s: CRD(mcmi.wrap(s, stages=STAGES, classifier="fc"), wrapped_teacher,
                                      num_data=len(x), num_negatives=256),
    }
    for name, build in students.items():
        torch.manual_seed(1)  # the same student initialization for every method
        student = student_cnn()
        method = build(student)
        loader = train_idx if isinstance(method, CRD) else train
        method.prepare(loader)  # CRD: the label of every index, for its negatives
        method.train()
        fit(lambda b, m=method: m(b).total, method.trainable_parameters(), loader, epochs=3,
            lr=0.05)
        table.append((name, mcmi.evaluate(student, test, CLASSES)))

    print(f"{DATA}: {len(x)} training, {len(xt)} test images; teacher "
          f"{sum(p.numel() for p in teacher.parameters())} parameters, student "
          f"{sum(p.numel() for p in student_cnn().parameters())}")
    print(f"MCMI.prepare left the teacher's batch-norm statistics unchanged: {untouched}")
    print()
    print("| model | accuracy | LL | CMI |")
    print("|---|---|---|---|")
    for name, res in table:
        print(f"| {name} | {res.accuracy:.4f} | {res.log_likelihood:.4f} | {res.cmi:.4f} |")
    print()
    print(f"done in {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
