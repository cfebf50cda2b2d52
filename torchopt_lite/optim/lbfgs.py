"""``LBFGS``: ``torch.optim.LBFGS``'s closure-driven L-BFGS on the shared two-loop recursion."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor

from torchopt_lite._lbfgs import push, two_loop
from torchopt_lite._strong_wolfe import strong_wolfe


class LBFGS(torch.optim.Optimizer):
    r"""L-BFGS with ``torch.optim.LBFGS``'s semantics: ``step(closure)`` runs up to ``max_iter``.

    Each iteration takes :math:`d = -H g` (the two-loop recursion over the last
    ``history_size`` pairs :math:`s = t d`, :math:`y = \delta g`, kept when
    :math:`y^\top s > 10^{-10}`, with :math:`H_0 = (y^\top s / y^\top y) I`) and moves by
    :math:`t d`: :math:`t = \min(1, 1/\|g\|_1)\,\mathrm{lr}` at the first iteration, ``lr``
    after, or the step of the strong-Wolfe line search (``line_search_fn="strong_wolfe"``).
    It stops on ``max_iter``, ``max_eval`` closure calls, :math:`\|g\|_\infty \le`
    ``tolerance_grad``, or changes below ``tolerance_change``. The memory is a ring buffer of
    fixed-size tensors, allocated at the first step (``history_size`` times the parameters).
    The math of the functional :func:`~torchopt_lite.alias.lbfgs.lbfgs` (Optax's) differs:
    see its Note.

    Args:
        params: the parameters (one group; complex ones are optimized through real views).
        lr: the step scale.
        max_iter: iterations per ``step``.
        max_eval: closure calls per ``step`` (default ``max_iter * 5 // 4``).
        tolerance_grad: stop when the largest gradient entry is at most this.
        tolerance_change: stop when the step or the loss changes less than this.
        history_size: pairs kept.
        line_search_fn: ``None`` or ``"strong_wolfe"``.

    Example:
        >>> w = torch.zeros(2, requires_grad=True)
        >>> opt = LBFGS([w], line_search_fn="strong_wolfe")
        >>> def closure():
        ...     opt.zero_grad()
        ...     loss = ((w - 1.0) ** 2).sum()
        ...     loss.backward()
        ...     return loss
        >>> _ = opt.step(closure)
        >>> w.detach()
        tensor([1., 1.])
    """

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        lr: float | Tensor = 1,
        max_iter: int = 20,
        max_eval: int | None = None,
        tolerance_grad: float = 1e-7,
        tolerance_change: float = 1e-9,
        history_size: int = 100,
        line_search_fn: str | None = None,
    ) -> None:
        if isinstance(lr, Tensor) and lr.numel() != 1:
            raise ValueError("LBFGS: Tensor lr must be 1-element.")
        if not lr >= 0.0:
            raise ValueError(f"LBFGS: Invalid learning rate: lr must be >= 0; got {lr}.")
        for name, value in (("max_iter", max_iter), ("history_size", history_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"LBFGS: {name} must be an int >= 1; got {value!r}.")
        if line_search_fn not in (None, "strong_wolfe"):
            raise ValueError(
                f"LBFGS: line_search_fn must be None or 'strong_wolfe'; got {line_search_fn!r}."
            )
        if max_eval is None:
            max_eval = max_iter * 5 // 4
        defaults = {
            "lr": lr,
            "max_iter": max_iter,
            "max_eval": max_eval,
            "tolerance_grad": tolerance_grad,
            "tolerance_change": tolerance_change,
            "history_size": history_size,
            "line_search_fn": line_search_fn,
        }
        super().__init__(params, defaults)
        if len(self.param_groups) != 1:
            raise ValueError(
                "LBFGS doesn't support per-parameter options (parameter groups); pass one "
                "iterable of tensors."
            )
        self._params: list[Tensor] = self.param_groups[0]["params"]

    def _flat_grad(self) -> Tensor:
        views = []
        for p in self._params:
            g = p.grad
            if g is None:
                g = torch.zeros_like(p)
            elif g.is_sparse:
                g = g.to_dense()
            views.append(torch.view_as_real(g).reshape(-1) if g.is_complex() else g.reshape(-1))
        return torch.cat(views)

    def _add(self, step: float, direction: Tensor) -> None:
        offset = 0
        for p in self._params:
            real = torch.view_as_real(p) if p.is_complex() else p
            n = real.numel()
            real.add_(direction[offset : offset + n].view_as(real), alpha=step)
            offset += n

    def _evaluate_at(
        self, closure: Callable[[], Any], x: list[Tensor], t: float, d: Tensor
    ) -> tuple[float, Tensor]:
        self._add(t, d)
        loss = float(closure())
        flat_grad = self._flat_grad()
        for p, saved in zip(self._params, x, strict=True):
            p.copy_(saved)
        return loss, flat_grad

    @torch.no_grad()
    def step(self, closure: Callable[[], Any]) -> Any:  # type: ignore[override]  # closure is required
        """Run up to ``max_iter`` L-BFGS iterations; return the loss at the start.

        Args:
            closure: reevaluates the model (zeroing and computing gradients) and returns
                the loss.
        """
        closure = torch.enable_grad()(closure)
        group = self.param_groups[0]
        lr = float(group["lr"])
        max_iter, max_eval = group["max_iter"], group["max_eval"]
        tolerance_grad, tolerance_change = group["tolerance_grad"], group["tolerance_change"]
        history = group["history_size"]

        state = self.state[self._params[0]]  # one global state, stored as torch does
        state.setdefault("func_evals", 0)
        state.setdefault("n_iter", 0)
        orig_loss = closure()
        loss = float(orig_loss)
        evals = 1
        state["func_evals"] += 1
        flat_grad = self._flat_grad()
        if flat_grad.abs().max() <= tolerance_grad:
            return orig_loss

        d, t = state.get("d"), state.get("t")
        s_mem, y_mem, rho = state.get("old_stps"), state.get("old_dirs"), state.get("ro")
        count, h_diag = state.get("count"), state.get("H_diag")
        prev_flat_grad, prev_loss = state.get("prev_flat_grad"), state.get("prev_loss")
        n_iter = 0
        while n_iter < max_iter:
            n_iter += 1
            state["n_iter"] += 1
            if state["n_iter"] == 1:
                d = flat_grad.neg()
                s_mem = flat_grad.new_zeros((history, flat_grad.numel()))
                y_mem = torch.zeros_like(s_mem)
                rho = flat_grad.new_zeros(history)
                count = 0  # pairs kept; an int, as load_state_dict casts float params' tensors
                h_diag = 1.0
            else:
                y = flat_grad.sub(prev_flat_grad)
                s = d.mul(t)
                ys = y.dot(s)
                if ys > 1e-10:  # keep the pair (curvature condition)
                    slot = torch.tensor(count % history, device=flat_grad.device)
                    push(s_mem, slot, s, inplace=True)
                    push(y_mem, slot, y, inplace=True)
                    push(rho, slot, 1.0 / ys, inplace=True)
                    count = count + 1
                    h_diag = ys / y.dot(y)
                d = two_loop(flat_grad.neg(), s_mem, y_mem, rho, h_diag, count % history)
            if prev_flat_grad is None:
                prev_flat_grad = flat_grad.clone(memory_format=torch.contiguous_format)
            else:
                prev_flat_grad.copy_(flat_grad)
            prev_loss = loss

            first = state["n_iter"] == 1  # the first step is at most lr in the 1-norm
            t = min(1.0, 1.0 / float(flat_grad.abs().sum())) * lr if first else lr
            gtd = float(flat_grad.dot(d))
            if gtd > -tolerance_change:  # not a descent direction any more
                break

            ls_evals = 0
            if group["line_search_fn"] is not None:
                x_init = [p.clone(memory_format=torch.contiguous_format) for p in self._params]

                def obj_func(x: Any, step: float, direction: Tensor) -> tuple[float, Tensor]:
                    return self._evaluate_at(closure, x, step, direction)

                loss, flat_grad, t, ls_evals = strong_wolfe(
                    obj_func, x_init, t, d, loss, flat_grad, gtd, max_ls=max_eval - evals
                )
                self._add(t, d)
                opt_cond = flat_grad.abs().max() <= tolerance_grad
            else:
                self._add(t, d)
                opt_cond = False
                if n_iter != max_iter:  # no re-evaluation after the last iteration
                    loss = float(closure())
                    flat_grad = self._flat_grad()
                    opt_cond = flat_grad.abs().max() <= tolerance_grad
                    ls_evals = 1
            evals += ls_evals
            state["func_evals"] += ls_evals

            if n_iter == max_iter or evals >= max_eval or opt_cond:
                break
            if d.mul(t).abs().max() <= tolerance_change:
                break
            if abs(loss - prev_loss) < tolerance_change:
                break

        state.update(
            d=d,
            t=t,
            old_stps=s_mem,
            old_dirs=y_mem,
            ro=rho,
            count=count,
            H_diag=h_diag,
            prev_flat_grad=prev_flat_grad,
            prev_loss=prev_loss,
        )
        return orig_loss
