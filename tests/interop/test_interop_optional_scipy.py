"""scipy is optional: the package and torchopt_lite.interop import without it."""

from __future__ import annotations

import subprocess
import sys

CODE = """
import sys

class BlockScipy:
    def find_spec(self, name, path=None, target=None):
        if name == "scipy" or name.startswith("scipy."):
            raise ImportError("scipy is blocked in this test")

sys.meta_path.insert(0, BlockScipy())
import numpy as np
import torch
import torchopt_lite
import torchopt_lite.interop as interop

theta = {"w": np.zeros(2)}
interop.ExternalOptimizer(theta, torchopt_lite.sgd(lr=1.0)).step({"w": np.ones(2)})
print("external", theta["w"].tolist())
for call in (
    lambda: interop.minimize(lambda p: (p**2).sum(), torch.ones(2)),
    lambda: interop.ScipyMinimizer([torch.ones(2)]),
    lambda: interop.shgo(lambda p: (p**2).sum(), torch.ones(2), bounds=[(0, 1)] * 2),
):
    try:
        call()
    except ImportError as err:
        print("error", err)
print("scipy" in sys.modules)
"""


def test_import_and_clear_error_without_scipy() -> None:
    out = subprocess.run(
        [sys.executable, "-c", CODE], capture_output=True, text=True, check=True, timeout=120
    ).stdout.splitlines()
    assert out[0] == "external [-1.0, -1.0]"
    for line, caller in zip(out[1:4], ("minimize", "ScipyMinimizer", "shgo"), strict=True):
        assert line.startswith(f"error {caller} needs scipy, an optional dependency")
        assert "pip install torchopt-lite[scipy]" in line
    assert out[4] == "False"
