"""Flat parameter vectors: leaves <-> ``(d,)`` vectors and ``(M, d)`` batches, noise, evaluation.

The estimators see one flat vector; this module is the boundary: it ravels the differentiated
leaves once, draws the noise once per backward pass (``(K, *shape)`` per leaf), and turns a
batch of flat parameter vectors back into leaves for the user's function, evaluated one by one,
in one call of a function that accepts a leading batch dimension, or under ``torch.func.vmap``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NamedTuple

import torch
from torch import Tensor

from torchopt_lite.diff.zero_order._estimators import BatchFn

EVALUATIONS = ("sequential", "batched", "vmap")


class Layout(NamedTuple):
    """Shapes and dtypes of the leaves packed into one flat vector of dtype ``dtype``."""

    shapes: tuple[torch.Size, ...]
    sizes: tuple[int, ...]
    dtypes: tuple[torch.dtype, ...]
    dtype: torch.dtype
    device: torch.device


def layout_of(leaves: Sequence[Tensor]) -> Layout:
    """The layout of ``leaves`` (non-empty); the flat dtype is their promoted dtype."""
    dtype = leaves[0].dtype
    for leaf in leaves[1:]:
        dtype = torch.promote_types(dtype, leaf.dtype)
    return Layout(
        shapes=tuple(leaf.shape for leaf in leaves),
        sizes=tuple(leaf.numel() for leaf in leaves),
        dtypes=tuple(leaf.dtype for leaf in leaves),
        dtype=dtype,
        device=leaves[0].device,
    )


def ravel(layout: Layout, leaves: Sequence[Tensor]) -> Tensor:
    """Concatenate ``leaves`` into one ``(d,)`` vector of dtype ``layout.dtype``."""
    flat = [leaf.reshape(-1).to(layout.dtype) for leaf in leaves]
    return flat[0] if len(flat) == 1 else torch.cat(flat)


def unravel(layout: Layout, flat: Tensor) -> list[Tensor]:
    """Split ``(*batch, d)`` into leaves ``(*batch, *shape)`` with their own dtypes."""
    batch = flat.shape[:-1]
    chunks = [flat] if len(layout.sizes) == 1 else flat.split(layout.sizes, dim=-1)
    return [
        chunk.reshape((*batch, *shape)).to(dtype)
        for chunk, shape, dtype in zip(chunks, layout.shapes, layout.dtypes, strict=True)
    ]


@contextlib.contextmanager
def seeded(generator: torch.Generator | None, device: torch.device) -> Iterator[None]:
    """Run the body under a fork of torch's RNG seeded from ``generator`` (no-op for ``None``).

    ``Distribution.sample`` takes no generator, so the draw happens on the global RNG inside
    ``torch.random.fork_rng``: the estimate is reproducible from the generator's seed and the
    global RNG state is left exactly as it was.
    """
    if generator is None:
        yield
        return
    seed = int(torch.randint(0, 2**62, (), generator=generator, device=generator.device))
    cuda = [torch.device(device).index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        torch.random.default_generator.manual_seed(seed)
        for index in cuda:
            torch.cuda.default_generators[index].manual_seed(seed)
        yield


def noise(
    sampler: Any, layout: Layout, num_samples: int, generator: torch.Generator | None, caller: str
) -> Tensor | None:
    """``(K, d)`` noise from ``sampler``: ``None`` (no noise), ``'normal'``, ``'rademacher'``
    or an object with ``.sample(sample_shape)``."""
    if sampler is None:
        return None
    if isinstance(sampler, str):
        return standard_noise(sampler, layout, num_samples, generator)
    return draw_noise(sampler.sample, layout, num_samples, generator, caller)


def standard_noise(
    kind: str, layout: Layout, num_samples: int, generator: torch.Generator | None
) -> Tensor:
    """``(K, d)`` standard normal (``kind='normal'``) or Rademacher (+-1) noise."""
    shape = (num_samples, sum(layout.sizes))
    options: dict[str, Any] = {"device": layout.device, "generator": generator}
    if kind == "normal":
        return torch.randn(shape, dtype=layout.dtype, **options)
    return torch.randint(0, 2, shape, **options).to(layout.dtype).mul_(2).sub_(1)


def draw_noise(
    sample: Callable[[torch.Size], Any],
    layout: Layout,
    num_samples: int,
    generator: torch.Generator | None,
    caller: str,
) -> Tensor:
    """Draw ``(num_samples, *shape)`` per leaf from ``sample`` and pack them into ``(K, d)``."""
    noises = []
    with seeded(generator, layout.device):
        for shape in layout.shapes:
            size = torch.Size((num_samples, *shape))
            draw = sample(size)
            draw = draw if isinstance(draw, Tensor) else torch.as_tensor(draw)
            if draw.shape != size:
                raise ValueError(
                    f"{caller}: distribution.sample({tuple(size)}) returned shape "
                    f"{tuple(draw.shape)}; samples must have exactly the requested shape "
                    "(num_samples, *param.shape). A distribution with a batch_shape (e.g. "
                    "Normal(torch.zeros(3), 1.0)) returns sample_shape + batch_shape: use a "
                    "scalar one such as Normal(0.0, 1.0)."
                )
            noises.append(
                draw.reshape(num_samples, -1).to(device=layout.device, dtype=layout.dtype)
            )
    return noises[0] if len(noises) == 1 else torch.cat(noises, dim=1)


def batch_evaluator(
    evaluation: str,
    layout: Layout,
    call: Callable[[list[Tensor]], Tensor],
    caller: str,
) -> BatchFn:
    """``f(batch (M, d)) -> (M,)`` from ``call(leaves) -> value``.

    ``sequential`` calls ``call`` once per row on unbatched leaves (each call returns a scalar);
    ``batched`` calls it once on leaves with a leading batch dimension ``M`` (it returns
    ``(M,)``); ``vmap`` maps the scalar ``call`` over the rows with ``torch.func.vmap``.
    """

    def sequential(batch: Tensor) -> Tensor:
        leaves = unravel(layout, batch)
        rows = [call([leaf[m] for leaf in leaves]) for m in range(batch.shape[0])]
        return torch.stack(rows).to(layout.dtype)

    def batched(batch: Tensor) -> Tensor:
        values = call(unravel(layout, batch))
        if not isinstance(values, Tensor) or tuple(values.shape) != (batch.shape[0],):
            got = tuple(values.shape) if isinstance(values, Tensor) else type(values).__name__
            raise ValueError(
                f"{caller}: with evaluation='batched' the function receives the perturbed "
                f"arguments with a leading batch dimension of size {batch.shape[0]} and must "
                f"return one value per row, shape ({batch.shape[0]},); got {got}. Use "
                "evaluation='vmap' or 'sequential' for a function of one parameter setting."
            )
        return values.to(layout.dtype)

    def vmapped(batch: Tensor) -> Tensor:
        def one(*leaves: Tensor) -> Tensor:
            return call(list(leaves))

        values = torch.func.vmap(one, randomness="different")(*unravel(layout, batch))
        return values.to(layout.dtype)

    return {"sequential": sequential, "batched": batched, "vmap": vmapped}[evaluation]
