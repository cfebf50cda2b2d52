"""Ridge regression, the closed-form reference of the implicit tests (float64)."""

from __future__ import annotations

import torch

D = torch.float64
N, P = 12, 4


def ridge_optimality(w, lam, X, y):
    """Gradient of 0.5 |X w - y|^2 + 0.5 lam |w|^2."""
    return X.T @ (X @ w - y) + lam * w


def ridge_closed_form(lam, X, y):
    return torch.linalg.solve(X.T @ X + lam * torch.eye(P, dtype=D), X.T @ y)
