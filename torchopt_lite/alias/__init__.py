"""Functional optimizers with TorchOpt 0.7.3's names, argument order and defaults."""

from torchopt_lite.alias import utils
from torchopt_lite.alias.adadelta import adadelta
from torchopt_lite.alias.adagrad import adagrad
from torchopt_lite.alias.adam import adam
from torchopt_lite.alias.adamax import adamax
from torchopt_lite.alias.adamw import adamw
from torchopt_lite.alias.radam import radam
from torchopt_lite.alias.rmsprop import rmsprop
from torchopt_lite.alias.sgd import sgd

__all__ = ["adadelta", "adagrad", "adam", "adamax", "adamw", "radam", "rmsprop", "sgd", "utils"]
