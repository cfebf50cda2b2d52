"""Shared pytest configuration: float64 references, seeded randomness, doctest namespace."""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest
import torch


@pytest.fixture
def seed() -> int:
    """A fixed seed; also seeds torch's global generator."""
    torch.manual_seed(0)
    return 0


@pytest.fixture(autouse=True)
def _doctest_namespace(doctest_namespace: dict) -> None:
    import torchopt_lite

    doctest_namespace["torch"] = torch
    doctest_namespace["torchopt_lite"] = torchopt_lite
    torch.manual_seed(0)
