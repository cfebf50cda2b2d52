"""Test problems with closed-form derivatives in numpy (the references) and torch objectives."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

GRADIENT_FREE = ("Nelder-Mead", "Powell", "COBYLA", "COBYQA")
HESSP = ("Newton-CG", "trust-ncg", "trust-krylov", "trust-constr")
HESS = ("trust-exact", "dogleg")
GRADIENT = ("CG", "BFGS", "L-BFGS-B", "TNC", "SLSQP", *HESSP, *HESS)


def rosen_t(x: Tensor) -> Tensor:
    """The n-dimensional Rosenbrock function in torch."""
    return (100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2).sum()


def reference_kwargs(method: str, jac, hessp, hess) -> dict:
    """The derivative keywords scipy's own run gets for ``method`` (closed forms)."""
    kwargs = {}
    if method not in GRADIENT_FREE:
        kwargs["jac"] = jac
    if method in HESSP:
        kwargs["hessp"] = hessp
    if method in HESS:
        kwargs["hess"] = hess
    return kwargs


class Logistic:
    """L2-regularised logistic regression over ``{"w": (d,), "b": ()}``.

    The packed vector is ``[b, w]`` (optree sorts dict keys), and the numpy references use the
    same order.
    """

    def __init__(self, n: int = 40, d: int = 3, lam: float = 0.1, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.X = rng.normal(size=(n, d))
        w_true = rng.normal(size=d)
        self.y = (rng.uniform(size=n) < 1 / (1 + np.exp(-self.X @ w_true - 0.3))).astype(float)
        self.lam = lam
        self.A = np.hstack([np.ones((n, 1)), self.X])  # columns for [b, w]
        self.mask = np.r_[0.0, np.ones(d)]  # no penalty on b
        self.Xt = torch.tensor(self.X)
        self.yt = torch.tensor(self.y)
        self.d = d

    def params(self, dtype: torch.dtype = torch.float64) -> dict[str, Tensor]:
        return {"w": torch.zeros(self.d, dtype=dtype), "b": torch.zeros((), dtype=dtype)}

    def torch_fun(self, p: dict[str, Tensor]) -> Tensor:
        z = self.Xt.to(p["w"].dtype) @ p["w"] + p["b"]
        data = torch.nn.functional.softplus(z) - self.yt.to(z.dtype) * z
        return data.mean() + 0.5 * self.lam * (p["w"] ** 2).sum()

    def fun(self, x: np.ndarray) -> float:
        z = self.A @ x
        return float(np.mean(np.logaddexp(0, z) - self.y * z) + 0.5 * self.lam * x[1:] @ x[1:])

    def jac(self, x: np.ndarray) -> np.ndarray:
        s = 1 / (1 + np.exp(-self.A @ x))
        return self.A.T @ (s - self.y) / len(self.y) + self.lam * self.mask * x

    def hess(self, x: np.ndarray) -> np.ndarray:
        s = 1 / (1 + np.exp(-self.A @ x))
        return (self.A.T * (s * (1 - s))) @ self.A / len(self.y) + self.lam * np.diag(self.mask)

    def hessp(self, x: np.ndarray, p: np.ndarray) -> np.ndarray:
        return self.hess(x) @ p
