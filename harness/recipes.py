"""Steps fixture files share when they declare flow cases: seeded data, calibration, QAT training.

Everything here is deterministic: the same seed gives the same numbers on every torch version
and machine (torch's CPU generator), so a case builds the same float model wherever it runs.
"""

from __future__ import annotations

#: QAT cases train this many optimizer steps before convert
QAT_STEPS = 3


def sample(shape, seed: int, dist: str = "randn"):
    """A tensor equal to what ``FloatInput(shape, dist).make()`` draws after ``torch.manual_seed(seed)``."""
    import torch

    return getattr(torch, dist)(*shape, generator=torch.Generator().manual_seed(seed))


def train(model, shape, seed: int = 1234, steps: int = QAT_STEPS, lr: float = 0.01):
    """A few SGD steps towards a fixed random target, on seeded batches: QAT's fake-quant training.

    The batches are drawn from their own generator, so they do not disturb the seed the harness
    set for the model's weights. Returns the model, still in training mode.
    """
    import torch

    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    target = None
    for _ in range(steps):
        batch = torch.randn(*shape, generator=generator)
        out = model(batch)
        if target is None:
            target = torch.randn(out.shape, generator=generator)
        loss = torch.nn.functional.mse_loss(out, target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model


def randomize_bn(model, seed: int = 7):
    """Give every BatchNorm non-trivial running statistics (mean ~ 0.1 N(0, 1), var in [0.5, 1.5)),
    so that conv-bn folding changes the weights. Returns the model."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and m.running_mean is not None:
            with torch.no_grad():
                m.running_mean.copy_(torch.randn(m.num_features, generator=generator) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=generator) + 0.5)
    return model
