"""The new aliases (issue 12) side by side: torch.optim in place, plain torch out of place.

Workloads: a ConvNet-shaped parameter set (20 float32 tensors, 0.97M elements: 4 conv layers,
norm scales, 4 linear layers; Muon takes its 8 weights as matrices). Section 1: one in-place
step of each alias that ``torch.optim`` also has, ours (``update`` + ``apply_updates``,
``inplace=True``, as bench_optimizers times ours) against ``torch.optim``'s foreach and
single-tensor forms. Section 2: one out-of-place step of every new alias under autograd (the
parameters require grad; ``update`` + ``apply_updates`` with ``inplace=False``, then the
backward of the new parameters: what a meta-learning unroll pays per step) against the same
formula written below as plain per-leaf torch ops. Each plain reference is checked against ours
once (float32) before it is timed. One thread; times are the least of a few interleaved turns;
every ratio is measured in this one run.
"""

from __future__ import annotations

import gc
import importlib
import math
import resource
import time
from collections.abc import Callable
from typing import Any

import torch

import torchopt_lite
from benchmarks._timing import generator, sync
from benchmarks.bench_optimizers import _torch_optim_step

L = list[torch.Tensor]
State = dict[str, Any]

CONVNET = [
    *[(32, 3, 3, 3), (32,), (64, 32, 3, 3), (64,), (128, 64, 3, 3), (128,)],
    *[(128, 128, 3, 3), (128,), (128,), (128,)],
    *[(512, 1024), (512,), (512,), (512,), (256, 512), (256,), (256, 256), (256,)],
    *[(10, 256), (10,)],
]
MATRICES = [(32, 27), (64, 288), (128, 576), (128, 1152), (512, 1024), (256, 512), (256, 256)]
MATRICES += [(10, 256)]
TARGET = 1.5


def _alias(name: str) -> Callable[..., Any] | None:
    """``torchopt_lite.alias.<name>.<name>``, or None where that module is not written yet."""
    try:
        return getattr(importlib.import_module(f"torchopt_lite.alias.{name}"), name)
    except (ImportError, AttributeError):
        return None


def _tensors(shapes: list[tuple[int, ...]], seed: int, scale: float = 1.0) -> L:
    gen = generator(seed)
    return [scale * torch.randn(s, generator=gen) for s in shapes]


def _best_interleaved(
    fns: dict[str, Callable[[], object]], *, rounds: int, number: int, warmup: int = 1
) -> dict[str, float]:
    """Least seconds per call of each function over ``rounds`` turns of ``number`` calls.

    The minimum, not ``_timing.timeit_interleaved``'s median: this benchmark shares 2 cores
    with other work, and the fastest of a few turns is the least disturbed one.
    """
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    best = dict.fromkeys(fns, math.inf)
    for _ in range(rounds):
        for name, fn in fns.items():
            gc.collect()
            sync()
            start = time.perf_counter()
            for _ in range(number):
                fn()
            sync()
            best[name] = min(best[name], (time.perf_counter() - start) / number)
    return best


def _ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:6.2f}x" if a is not None and b else "     - "


def _ms(t: float | None) -> str:
    return f"{t * 1e3:9.3f}" if t is not None else "        -"


# --- Section 1: in place against torch.optim --------------------------------------------------

# alias, our kwargs, torch.optim class name, its kwargs, the parameter shapes
TORCH_TWINS: list[tuple[str, dict, str, dict, list]] = [
    ("nadam", {}, "NAdam", {}, CONVNET),
    ("nadamw", {}, "NAdam", {"decoupled_weight_decay": True, "weight_decay": 1e-4}, CONVNET),
    ("amsgrad", {}, "Adam", {"amsgrad": True}, CONVNET),
    ("adafactor", {}, "Adafactor", {}, CONVNET),
    ("muon", {}, "Muon", {}, MATRICES),
    ("rprop", {}, "Rprop", {}, CONVNET),
    ("asgd", {}, "ASGD", {}, CONVNET),
]


def _ours_inplace(opt: Any, params: L, grads: L) -> Callable[[], None]:
    """``update`` + ``apply_updates`` in place; the updates overwrite the gradient buffers."""
    ps = [p.clone() for p in params]
    state = opt.init(ps)
    bufs = [g.clone() for g in grads]

    def step() -> None:
        nonlocal state
        updates, state = opt.update(bufs, state, params=ps, inplace=True)
        torchopt_lite.apply_updates(ps, updates, inplace=True)

    return step


def _faults_per_step(step: Callable[[], None], n: int = 4) -> float:
    """Minor page faults per call: fresh pages the allocator maps for temporaries."""
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(n):
        step()
    return (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / n


def _twin(cls_name: str, kw: dict) -> str:
    args = ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in kw.items())
    return f"{cls_name}({args})"


def bench_inplace() -> None:
    rows = []
    for name, kw, cls_name, torch_kw, shapes in TORCH_TWINS:
        alias = _alias(name)
        if alias is None:
            print(f"  note: torchopt_lite.alias.{name} is missing; skipped")
            continue
        params, grads = _tensors(shapes, 0), _tensors(shapes, 1)
        cls = getattr(torch.optim, cls_name)
        fns = {"ours": _ours_inplace(alias(**kw), params, grads)}
        if cls_name == "Muon":  # one rendering only (no foreach argument)
            fns["single"] = _torch_optim_step(cls, params, grads, **torch_kw)
            rounds, number = 3, 1
        else:
            fns["foreach"] = _torch_optim_step(cls, params, grads, foreach=True, **torch_kw)
            fns["single"] = _torch_optim_step(cls, params, grads, foreach=False, **torch_kw)
            rounds, number = 7, 3
        t = _best_interleaved(fns, rounds=rounds, number=number)
        base = "foreach" if "foreach" in fns else "single"
        faults = (_faults_per_step(fns["ours"]), _faults_per_step(fns[base]))
        rows.append(
            (name, _twin(cls_name, torch_kw), t.get("foreach"), t["single"], t["ours"], faults)
        )
    n = sum(math.prod(s) for s in CONVNET)
    print(
        f"\n## In place, one step, ConvNet-shaped {len(CONVNET)} tensors ({n / 1e6:.2f}M "
        f"float32; muon: {len(MATRICES)} matrices)"
    )
    print(
        "   ours = update+apply_updates(inplace=True); faults = minor page faults per step, "
        "ours | torch.optim foreach"
    )
    print(
        f"  {'alias':<10s} {'torch.optim twin':<54s} {'foreach ms':>10s} {'single ms':>9s}"
        f" {'ours ms':>9s} {'ours/foreach':>12s} {'ours/single':>11s}  {'faults':>11s}"
    )
    for name, twin, tf, ts, to, (fo, fb) in rows:
        ok = "ok" if to / (tf if tf is not None else ts) <= TARGET else "OVER"
        print(
            f"  {name:<10s} {twin:<54s} {_ms(tf):>10s} {_ms(ts)} {_ms(to)} "
            f"{_ratio(to, tf):>12s} {_ratio(to, ts):>11s}  {fo:5.0f} |{fb:4.0f}  {ok}"
        )
    print(f"  target: ours <= {TARGET}x torch.optim foreach (Muon: its only, single-tensor form)")
    for name, *_, (fo, fb) in rows:
        if fo > max(100, 4 * fb):
            print(
                f"  note: {name}: {fo:.0f} fresh pages per step ({fo * 4 / 1024:.1f} MiB): its "
                "temporaries go back to the OS every step (glibc trims the heap top), and their "
                "first touch is timed; the ratio depends on the allocator's state"
            )


# --- Section 2: out of place against plain per-leaf torch -------------------------------------
#
# A plain reference is (init, step): init(params) -> state, step(params, grads, state, t) ->
# (new params, new state), pure per-leaf torch ops, the formula of the alias docstring; t counts
# from 1 and is a Python int (a hand-written unroll knows its step).


def _sq(x: torch.Tensor) -> torch.Tensor:
    return (x * x).sum()


def _zeros(ps: L) -> L:
    return [torch.zeros_like(p) for p in ps]


def _adam_dir(gs: L, st: State, t: int, b1: float, b2: float, eps: float, er: float = 0.0):
    m = [b1 * m + (1 - b1) * g for m, g in zip(st["m"], gs, strict=True)]
    v = [b2 * v + (1 - b2) * g * g for v, g in zip(st["v"], gs, strict=True)]
    c1, c2 = 1 - b1**t, 1 - b2**t
    r = [(m / c1) / (torch.sqrt(v / c2 + er) + eps) for m, v in zip(m, v, strict=True)]
    return r, m, v


def _mv(ps: L) -> State:
    return {"m": _zeros(ps), "v": _zeros(ps)}


def adabelief_ref(lr=1e-3, b1=0.9, b2=0.999, eps=1e-16, er=1e-16):
    def step(ps, gs, st, t):
        m = [b1 * m + (1 - b1) * g for m, g in zip(st["m"], gs, strict=True)]
        s = [b2 * s + (1 - b2) * (g - m) ** 2 + er for s, g, m in zip(st["v"], gs, m, strict=True)]
        c1, c2 = 1 - b1**t, 1 - b2**t
        new = [
            p - lr * (m / c1) / (torch.sqrt(s / c2) + eps) for p, m, s in zip(ps, m, s, strict=True)
        ]
        return new, {"m": m, "v": s}

    return _mv, step


def adamaxw_ref(lr=1e-3, b1=0.9, b2=0.999, eps=1e-8, wd=1e-4):
    def step(ps, gs, st, t):
        m = [b1 * m + (1 - b1) * g for m, g in zip(st["m"], gs, strict=True)]
        n = [torch.maximum(b2 * n, g.abs() + eps) for n, g in zip(st["v"], gs, strict=True)]
        c1 = 1 - b1**t
        new = [p - lr * (m / (c1 * n) + wd * p) for p, m, n in zip(ps, m, n, strict=True)]
        return new, {"m": m, "v": n}

    return _mv, step


def adan_ref(lr=1e-3, b1=0.98, b2=0.92, b3=0.99, eps=1e-8, er=1e-8, wd=0.0):
    def init(ps):
        return {"m": _zeros(ps), "v": _zeros(ps), "n": _zeros(ps), "g": _zeros(ps)}

    def step(ps, gs, st, t):
        d = [g - gp if t > 1 else torch.zeros_like(g) for g, gp in zip(gs, st["g"], strict=True)]
        m = [b1 * m + (1 - b1) * g for m, g in zip(st["m"], gs, strict=True)]
        v = [b2 * v + (1 - b2) * d for v, d in zip(st["v"], d, strict=True)]
        n = [b3 * n + (1 - b3) * (g + b2 * d) ** 2 for n, g, d in zip(st["n"], gs, d, strict=True)]
        c1, c2, c3 = 1 - b1**t, 1 - b2**t, 1 - b3**t
        new = [
            p - lr * ((m / c1 + b2 * v / c2) / (torch.sqrt(n / c3 + er) + eps) + wd * p)
            for p, m, v, n in zip(ps, m, v, n, strict=True)
        ]
        return new, {"m": m, "v": v, "n": n, "g": list(gs)}

    return init, step


def amsgrad_ref(lr=1e-3, b1=0.9, b2=0.999, eps=1e-8):
    def init(ps):
        return {"m": _zeros(ps), "v": _zeros(ps), "vmax": _zeros(ps)}

    def step(ps, gs, st, t):
        m = [b1 * m + (1 - b1) * g for m, g in zip(st["m"], gs, strict=True)]
        v = [b2 * v + (1 - b2) * g * g for v, g in zip(st["v"], gs, strict=True)]
        vmax = [torch.maximum(a, b) for a, b in zip(st["vmax"], v, strict=True)]
        c1, c2 = 1 - b1**t, 1 - b2**t
        new = [
            p - lr * (m / c1) / (torch.sqrt(w / c2) + eps)
            for p, m, w in zip(ps, m, vmax, strict=True)
        ]
        return new, {"m": m, "v": v, "vmax": vmax}

    return init, step


def fromage_ref(lr=1e-2, n0=1e-6):
    def step(ps, gs, st, t):
        def n(x):
            return torch.linalg.vector_norm(x).clamp_min(n0)

        shrink = 1 / math.sqrt(1 + lr**2)
        return [shrink * (p - lr * n(p) / n(g) * g) for p, g in zip(ps, gs, strict=True)], st

    return (lambda ps: {}), step


def _trust(p: torch.Tensor, r: torch.Tensor, c: float = 1.0, eps: float = 0.0) -> torch.Tensor:
    pn, rn = torch.linalg.vector_norm(p), torch.linalg.vector_norm(r)
    return torch.where((pn > 0) & (rn > 0), c * pn / (rn + eps), torch.ones_like(pn))


def lamb_ref(lr=1e-3, b1=0.9, b2=0.999, eps=1e-6, wd=0.0):
    def step(ps, gs, st, t):
        r, m, v = _adam_dir(gs, st, t, b1, b2, eps)
        r = [r + wd * p for r, p in zip(r, ps, strict=True)]
        return [p - lr * _trust(p, r) * r for p, r in zip(ps, r, strict=True)], {"m": m, "v": v}

    return _mv, step


def lars_ref(lr=1e-3, wd=0.0, c=1e-3, eps=0.0, mu=0.9):
    def step(ps, gs, st, t):
        r = [g + wd * p for g, p in zip(gs, ps, strict=True)]
        x = [-lr * _trust(p, r, c, eps) * r for p, r in zip(ps, r, strict=True)]
        b = [mu * b + x for b, x in zip(st["m"], x, strict=True)]
        return [p + b for p, b in zip(ps, b, strict=True)], {"m": b}

    return (lambda ps: {"m": _zeros(ps)}), step


def lion_ref(lr=1e-4, b1=0.9, b2=0.99, wd=1e-3):
    def step(ps, gs, st, t):
        c = [b1 * m + (1 - b1) * g for m, g in zip(st["m"], gs, strict=True)]
        new = [p - lr * (torch.sign(c) + wd * p) for p, c in zip(ps, c, strict=True)]
        return new, {"m": [b2 * m + (1 - b2) * g for m, g in zip(st["m"], gs, strict=True)]}

    return (lambda ps: {"m": _zeros(ps)}), step


def nadam_ref(lr=2e-3, b1=0.9, b2=0.999, eps=1e-8, wd=0.0, psi=4e-3, decoupled=False):
    def init(ps):
        return {"m": _zeros(ps), "v": _zeros(ps), "prod": 1.0}

    def step(ps, gs, st, t):
        if wd and not decoupled:
            gs = [g + wd * p for g, p in zip(gs, ps, strict=True)]
        mu, mu1 = (b1 * (1 - 0.5 * 0.96 ** (k * psi)) for k in (t, t + 1))
        prod = st["prod"] * mu
        m = [b1 * m + (1 - b1) * g for m, g in zip(st["m"], gs, strict=True)]
        v = [b2 * v + (1 - b2) * g * g for v, g in zip(st["v"], gs, strict=True)]
        c2 = 1 - b2**t
        a, b = (1 - mu) / (1 - prod), mu1 / (1 - prod * mu1)
        delta = [
            (a * g + b * m) / (torch.sqrt(v / c2) + eps) for g, m, v in zip(gs, m, v, strict=True)
        ]
        if decoupled:
            delta = [d + wd * p for d, p in zip(delta, ps, strict=True)]
        return [p - lr * d for p, d in zip(ps, delta, strict=True)], {"m": m, "v": v, "prod": prod}

    return init, step


def noisy_sgd_ref(lr=1e-3, eta=0.01, gamma=0.55):
    def step(ps, gs, st, t):
        sigma = math.sqrt(eta / t**gamma)  # t - 1 earlier steps
        return [p - lr * (g + sigma * torch.randn_like(g)) for p, g in zip(ps, gs, strict=True)], st

    return (lambda ps: {}), step


def novograd_ref(lr=1e-3, b1=0.9, b2=0.25, eps=1e-6, wd=0.0):
    def init(ps):
        return {"m": _zeros(ps), "nu": [torch.zeros(()) for _ in ps]}

    def step(ps, gs, st, t):
        nu = [
            _sq(g) if t == 1 else b2 * n + (1 - b2) * _sq(g)
            for n, g in zip(st["nu"], gs, strict=True)
        ]
        m = [
            b1 * m + g / (torch.sqrt(n) + eps) + wd * p
            for m, g, n, p in zip(st["m"], gs, nu, ps, strict=True)
        ]
        return [p - lr * m for p, m in zip(ps, m, strict=True)], {"m": m, "nu": nu}

    return init, step


def ogd_ref(lr=1e-3, alpha=1.0, beta=1.0):
    def step(ps, gs, st, t):
        prev = gs if t == 1 else st["g"]
        new = [
            p - lr * ((alpha + beta) * g - beta * q) for p, g, q in zip(ps, gs, prev, strict=True)
        ]
        return new, {"g": list(gs)}

    return (lambda ps: {"g": _zeros(ps)}), step


def optimistic_adam_ref(lr=1e-3, b1=0.9, b2=0.999, eps=1e-8):
    def init(ps):
        return {"m": _zeros(ps), "v": _zeros(ps), "r": _zeros(ps)}

    def step(ps, gs, st, t):
        m = [b1 * m + (1 - b1) * g for m, g in zip(st["m"], gs, strict=True)]
        v = [b2 * v + (1 - b2) * g * g for v, g in zip(st["v"], gs, strict=True)]
        a, b, c2 = b1 / (1 - b1 ** (t + 1)), (1 - b1) / (1 - b1**t), 1 - b2**t
        r = [(a * m + b * g) / (torch.sqrt(v / c2) + eps) for m, g, v in zip(m, gs, v, strict=True)]
        prev = r if t == 1 else st["r"]
        new = [p - lr * r - lr * (r - q) for p, r, q in zip(ps, r, prev, strict=True)]
        return new, {"m": m, "v": v, "r": r}

    return init, step


POLYAK_VALUE = torch.tensor(50.0)


def polyak_sgd_ref(lr=1.0, max_lr=1.0, f_min=0.0, eps=0.0):
    def step(ps, gs, st, t):
        sq = torch.stack([_sq(g) for g in gs]).sum()
        s = torch.clamp_max((POLYAK_VALUE - f_min) / (sq + eps), max_lr)
        return [p - lr * s * g for p, g in zip(ps, gs, strict=True)], st

    return (lambda ps: {}), step


def prodigy_ref(lr=1.0, b1=0.9, b2=0.999, eps=1e-8, d0=1e-6, coef=1.0, wd=0.0):
    b3 = math.sqrt(b2)

    def init(ps):
        zero = torch.zeros(())
        return {
            "m": _zeros(ps),
            "v": _zeros(ps),
            "s": _zeros(ps),
            "x0": [p.detach() for p in ps],
            "d": torch.full((), d0),
            "r": zero,
        }

    def step(ps, gs, st, t):
        d, k = st["d"], t - 1
        eta = d * lr * math.sqrt(1 - b2 ** (k + 1)) / (1 - b1 ** (k + 1))
        m = [b1 * m + (1 - b1) * d * g for m, g in zip(st["m"], gs, strict=True)]
        v = [b2 * v + (1 - b2) * d * d * g * g for v, g in zip(st["v"], gs, strict=True)]
        w = d / d0 * eta
        dot = torch.stack(
            [(g * (x0 - p)).sum() for g, x0, p in zip(gs, st["x0"], ps, strict=True)]
        ).sum()
        r = b3 * st["r"] + w * dot
        s = [b3 * s + w * g for s, g in zip(st["s"], gs, strict=True)]
        l1 = torch.stack([s.abs().sum() for s in s]).sum()
        d_new = torch.maximum(d, coef * r / l1)
        new = [
            p - eta * (m / (torch.sqrt(v) + d_new * eps) + wd * p)
            for p, m, v in zip(ps, m, v, strict=True)
        ]
        return new, {"m": m, "v": v, "s": s, "x0": st["x0"], "d": d_new, "r": r}

    return init, step


def rprop_ref(lr=1e-2, etas=(0.5, 1.2), sizes=(1e-6, 50.0)):
    def init(ps):
        return {"g": _zeros(ps), "eta": [torch.full_like(p, lr) for p in ps]}

    def step(ps, gs, st, t):
        new, gk, ek = [], [], []
        for p, g, gp, eta in zip(ps, gs, st["g"], st["eta"], strict=True):
            s = torch.sign(g * gp)
            f = torch.where(s > 0, etas[1], torch.where(s < 0, etas[0], 1.0))
            eta = torch.clamp(eta * f, *sizes)
            g = torch.where(s < 0, 0.0, g)
            new.append(p - eta * torch.sign(g))
            gk.append(g)
            ek.append(eta)
        return new, {"g": gk, "eta": ek}

    return init, step


def asgd_ref(lr=1e-2, lambd=1e-4, alpha=0.75, t0=1e6, wd=0.0):
    def init(ps):
        return {"ax": [p.detach() for p in ps]}

    def step(ps, gs, st, t):
        eta = lr / (1 + lambd * lr * (t - 1)) ** alpha
        mu = 1 / max(1, t - 1 - t0)
        new = [p - eta * (g + wd * p + lambd * p) for p, g in zip(ps, gs, strict=True)]
        return new, {"ax": [a + mu * (p - a) for a, p in zip(st["ax"], new, strict=True)]}

    return init, step


def schedule_free_ref(lr=1.0, b1=0.9, wd=0.0, power=2.0, b2=None, eps=1e-8):
    def init(ps):
        st = {"z": [p.detach() for p in ps], "wsum": 0.0}
        return {**st, "v": _zeros(ps)} if b2 is not None else st

    def step(ps, gs, st, t):
        out = {}
        if b2 is not None:  # AdamW's direction
            v = [b2 * v + (1 - b2) * g * g for v, g in zip(st["v"], gs, strict=True)]
            gs = [g / (torch.sqrt(v / (1 - b2**t)) + eps) for g, v in zip(gs, v, strict=True)]
            out["v"] = v
        d = [g + wd * y for g, y in zip(gs, ps, strict=True)]
        wsum = st["wsum"] + lr**power
        c = lr**power / wsum
        new = [
            (1 - c) * y + c * z + lr * (b1 * (1 - c) - 1) * d
            for y, z, d in zip(ps, st["z"], d, strict=True)
        ]
        return new, {
            **out,
            "z": [z - lr * d for z, d in zip(st["z"], d, strict=True)],
            "wsum": wsum,
        }

    return init, step


def sign_sgd_ref(lr=1e-3):
    def step(ps, gs, st, t):
        return [p - lr * torch.sign(g) for p, g in zip(ps, gs, strict=True)], st

    return (lambda ps: {}), step


def signum_ref(lr=1e-3, beta=0.9):
    def step(ps, gs, st, t):
        m = [beta * m + (1 - beta) * g for m, g in zip(st["m"], gs, strict=True)]
        return [p - lr * torch.sign(m) for p, m in zip(ps, m, strict=True)], {"m": m}

    return (lambda ps: {"m": _zeros(ps)}), step


def sm3_ref(lr=1e-3, mu=0.9, eps=1e-8):
    def axes(p):  # one accumulator per axis (2+ axes), else one per element
        return [torch.zeros(n) for n in p.shape] if p.ndim >= 2 else [torch.zeros_like(p)]

    def init(ps):
        return {"acc": [axes(p) for p in ps], "m": _zeros(ps)}

    def step(ps, gs, st, t):
        new, accs, ms = [], [], []
        for p, g, acc, m in zip(ps, gs, st["acc"], st["m"], strict=True):
            if g.ndim >= 2:
                views = [
                    a.view([-1 if j == i else 1 for j in range(g.ndim)]) for i, a in enumerate(acc)
                ]
                low = views[0]
                for a in views[1:]:
                    low = torch.minimum(low, a)
                v = g * g + low
                acc = [v.amax(dim=[j for j in range(g.ndim) if j != i]) for i in range(g.ndim)]
            else:
                v = g * g + acc[0]
                acc = [v]
            n = torch.where(v > 0, g * torch.rsqrt(v + eps), 0.0)
            m = mu * m + (1 - mu) * n
            new.append(p - lr * m)
            accs.append(acc)
            ms.append(m)
        return new, {"acc": accs, "m": ms}

    return init, step


def yogi_ref(lr=1e-3, b1=0.9, b2=0.999, eps=1e-3, v0=1e-6):
    def init(ps):
        return {
            "m": [torch.full_like(p, v0) for p in ps],
            "v": [torch.full_like(p, v0) for p in ps],
        }

    def step(ps, gs, st, t):
        m = [b1 * m + (1 - b1) * g for m, g in zip(st["m"], gs, strict=True)]
        v = [v - (1 - b2) * torch.sign(v - g * g) * g * g for v, g in zip(st["v"], gs, strict=True)]
        c1, c2 = 1 - b1**t, 1 - b2**t
        new = [
            p - lr * (m / c1) / (torch.sqrt(v / c2) + eps) for p, m, v in zip(ps, m, v, strict=True)
        ]
        return new, {"m": m, "v": v}

    return init, step


def adafactor_ref(lr=1e-2, tau=-0.8, eps2=1e-3, d=1.0, wd=0.0):
    eps1 = torch.finfo(torch.float32).eps

    def init(ps):
        def factors(p):
            if p.ndim < 2:
                return [torch.zeros_like(p)]
            return [torch.zeros(p.shape[:-1]), torch.zeros(p.shape[:-2] + p.shape[-1:])]

        return {"f": [factors(p) for p in ps]}

    def rms(x):
        return torch.linalg.vector_norm(x) / math.sqrt(x.numel())

    def step(ps, gs, st, t):
        beta, rho = 1 - t**tau, min(lr, 1 / math.sqrt(t))
        new, fs = [], []
        for p, g, f in zip(ps, gs, st["f"], strict=True):
            g2 = g * g
            if g.ndim >= 2:
                row = beta * f[0] + (1 - beta) * g2.mean(-1)
                col = beta * f[1] + (1 - beta) * g2.mean(-2)
                scale = row.mean(-1, keepdim=True).clamp_min(eps1)
                var = (row / scale).unsqueeze(-1) * col.unsqueeze(-2)
                f = [row, col]
            else:
                var = beta * f[0] + (1 - beta) * g2
                f = [var]
            u = g * torch.rsqrt(var.clamp_min(eps1 * eps1))
            a = torch.clamp_min(rms(p), eps2) * rho
            u = a * u / torch.clamp_min(rms(u) / d, 1.0)
            new.append(p * (1 - lr * wd) - u)
            fs.append(f)
        return new, {"f": fs}

    return init, step


NS = (3.4445, -4.775, 2.0315)


def muon_ref(lr=1e-3, wd=0.1, mu=0.95, eps=1e-7, steps=5):
    a, b, c = NS

    def step(ps, gs, st, t):
        new, bufs = [], []
        for p, g, buf in zip(ps, gs, st["b"], strict=True):
            buf = mu * buf + (1 - mu) * g
            x = (mu * buf + (1 - mu) * g).bfloat16()
            tall = x.shape[0] > x.shape[1]
            x = x.mT if tall else x
            x = x / torch.linalg.vector_norm(x).clamp_min(eps)
            for _ in range(steps):
                gram = x @ x.mT
                x = a * x + (b * gram + c * gram @ gram) @ x
            x = (x.mT if tall else x).to(p.dtype)
            r = math.sqrt(max(1.0, p.shape[0] / p.shape[1]))
            new.append(p * (1 - lr * wd) - lr * r * x)
            bufs.append(buf)
        return new, {"b": bufs}

    return (lambda ps: {"b": _zeros(ps)}), step


SF = "constant lr, no warm-up"

# alias, our kwargs, plain reference, shapes, extra update arguments, what the reference covers
PLAIN: list[tuple[str, dict, tuple, list, dict, str]] = [
    ("adabelief", {}, adabelief_ref(), CONVNET, {}, ""),
    ("adamaxw", {}, adamaxw_ref(), CONVNET, {}, ""),
    ("adan", {}, adan_ref(), CONVNET, {}, ""),
    ("amsgrad", {}, amsgrad_ref(), CONVNET, {}, ""),
    ("fromage", {}, fromage_ref(), CONVNET, {}, ""),
    ("lamb", {}, lamb_ref(), CONVNET, {}, ""),
    ("lars", {}, lars_ref(), CONVNET, {}, ""),
    ("lion", {"lr": 1e-4}, lion_ref(), CONVNET, {}, ""),
    ("nadam", {}, nadam_ref(), CONVNET, {}, ""),
    ("nadamw", {}, nadam_ref(wd=1e-4, decoupled=True), CONVNET, {}, ""),
    ("noisy_sgd", {"lr": 1e-3}, noisy_sgd_ref(), CONVNET, {}, "torch.randn noise, not compared"),
    ("novograd", {}, novograd_ref(), CONVNET, {}, ""),
    ("optimistic_gradient_descent", {"lr": 1e-3}, ogd_ref(), CONVNET, {}, ""),
    ("optimistic_adam", {"lr": 1e-3}, optimistic_adam_ref(), CONVNET, {}, ""),
    ("polyak_sgd", {}, polyak_sgd_ref(), CONVNET, {"value": POLYAK_VALUE}, ""),
    ("prodigy", {}, prodigy_ref(), CONVNET, {}, ""),
    ("rprop", {}, rprop_ref(), CONVNET, {}, ""),
    ("asgd", {}, asgd_ref(), CONVNET, {}, ""),
    ("schedule_free_sgd", {}, schedule_free_ref(), CONVNET, {}, SF),
    ("schedule_free_adamw", {}, schedule_free_ref(lr=2.5e-3, b2=0.999), CONVNET, {}, SF),
    ("sign_sgd", {"lr": 1e-3}, sign_sgd_ref(), CONVNET, {}, ""),
    ("signum", {"lr": 1e-3}, signum_ref(), CONVNET, {}, ""),
    ("sm3", {}, sm3_ref(), CONVNET, {}, ""),
    ("yogi", {}, yogi_ref(), CONVNET, {}, ""),
    ("adafactor", {}, adafactor_ref(), CONVNET, {}, ""),
    ("muon", {}, muon_ref(), MATRICES, {}, "matrices only (no AdamW fallback)"),
]


def _oop_pair(
    opt: Any, ref: tuple, shapes: list, extra: dict
) -> tuple[Callable[[], None], Callable[[], None], float]:
    """Our step and the plain step (step 2, from each one's state after step 1), and the
    largest difference of their new parameters relative to the largest step."""
    params, g1, g2 = _tensors(shapes, 0), _tensors(shapes, 1, 0.1), _tensors(shapes, 2, 0.1)
    init, plain_step = ref
    with torch.no_grad():
        state = opt.init(params)
        updates, state = opt.update(g1, state, params=params, inplace=False, **extra)
        p1 = torchopt_lite.apply_updates(params, updates, inplace=False)
        pst = init(params)
        _, pst = plain_step(params, g1, pst, 1)
        ours_u, _ = opt.update(g2, state, params=p1, inplace=False, **extra)
        ours = torchopt_lite.apply_updates(p1, ours_u, inplace=False)
        plain, _ = plain_step(p1, g2, pst, 2)
        diff = max(float((a - b).abs().max()) for a, b in zip(ours, plain, strict=True))
        size = max(float((a - b).abs().max()) for a, b in zip(plain, p1, strict=True))
    ps = [p.clone().requires_grad_(True) for p in p1]
    ones = [torch.ones_like(p) for p in ps]

    def ours_step() -> None:
        updates, _ = opt.update(g2, state, params=ps, inplace=False, **extra)
        new = torchopt_lite.apply_updates(ps, updates, inplace=False)
        torch.autograd.grad(new, ps, ones)

    def plain_run() -> None:
        new, _ = plain_step(ps, g2, pst, 2)
        torch.autograd.grad(new, ps, ones)

    return ours_step, plain_run, diff / max(size, 1e-30)


def bench_out_of_place() -> None:
    rows = []
    for name, kw, ref, shapes, extra, covers in PLAIN:
        alias = _alias(name)
        if alias is None:
            print(f"  note: torchopt_lite.alias.{name} is missing; skipped")
            continue
        ours, plain, rel = _oop_pair(alias(**kw), ref, shapes, extra)
        rounds = 3 if name == "muon" else 6
        t = _best_interleaved({"ours": ours, "plain": plain}, rounds=rounds, number=2)
        agree = "-" if "not compared" in covers else f"{rel:.0e}"
        rows.append((name, t["plain"], t["ours"], agree, covers))
    print(
        "\n## Out of place under autograd, one step + backward, same parameter sets; "
        "ours = update+apply_updates(inplace=False), plain = per-leaf torch ops"
    )
    print(
        f"  {'alias':<28s} {'plain ms':>9s} {'ours ms':>9s} {'ours/plain':>10s} "
        f"{'|ours-plain|/|step|':>19s}  reference covers"
    )
    for name, tp, to, agree, covers in rows:
        ok = "ok" if to / tp <= TARGET else "OVER"
        print(
            f"  {name:<28s} {_ms(tp)} {_ms(to)} {_ratio(to, tp):>10s} {agree:>19s}  {ok:<4s} "
            f"{covers or 'all of the docstring math (defaults)'}"
        )
    print(f"  target (this benchmark's bar, none stated in the issue): ours <= {TARGET}x plain")


def main() -> None:
    # In place, our updates overwrite the gradient buffers; an alias whose update is a small
    # multiple of the gradient (asgd) would drive them into denormals within the timed steps.
    torch.set_flush_denormal(True)
    try:
        bench_inplace()
        bench_out_of_place()
    finally:
        torch.set_flush_denormal(False)


if __name__ == "__main__":
    from benchmarks._timing import single_thread

    single_thread()
    main()
