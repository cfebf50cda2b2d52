"""The implicit tests' shared data: a seeded ridge-regression problem."""

import pytest
import torch

from ._ridge import D, N, P


@pytest.fixture
def data(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.randn(N, P, dtype=D), torch.randn(N, dtype=D)
