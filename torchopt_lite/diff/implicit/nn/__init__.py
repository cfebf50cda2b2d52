"""The implicit meta-gradient module (TorchOpt's ``diff.implicit.nn`` path)."""

from torchopt_lite.diff.implicit.nn.module import ImplicitMetaGradientModule

__all__ = ["ImplicitMetaGradientModule"]
