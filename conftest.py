"""Shared pytest configuration: float64 references, seeded randomness, doctest namespace."""

import os
import warnings

os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest
import torch

with warnings.catch_warnings():
    # Forward-mode AD (torch.func.jvp, jacfwd, forward_ad) imports torch's JVP decompositions
    # on first use, which call the deprecated torch.jit.script: a warning from torch itself,
    # once per process. Load them here so that no test or doctest depends on running first.
    warnings.simplefilter("ignore", DeprecationWarning)
    import torch._decomp.decompositions_for_jvp


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
