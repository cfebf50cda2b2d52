"""Functional optimizers: TorchOpt 0.7.3's eight with its names, argument order and defaults,
and the optimizers of Optax, torch.optim and recent practice beyond them."""

from torchopt_lite.alias import utils
from torchopt_lite.alias.adabelief import adabelief
from torchopt_lite.alias.adadelta import adadelta
from torchopt_lite.alias.adafactor import adafactor
from torchopt_lite.alias.adagrad import adagrad
from torchopt_lite.alias.adam import adam
from torchopt_lite.alias.adamax import adamax
from torchopt_lite.alias.adamaxw import adamaxw
from torchopt_lite.alias.adamw import adamw
from torchopt_lite.alias.adan import adan
from torchopt_lite.alias.amsgrad import amsgrad
from torchopt_lite.alias.asgd import asgd
from torchopt_lite.alias.fromage import fromage
from torchopt_lite.alias.lamb import lamb
from torchopt_lite.alias.lars import lars
from torchopt_lite.alias.lbfgs import lbfgs
from torchopt_lite.alias.lion import lion
from torchopt_lite.alias.muon import muon
from torchopt_lite.alias.nadam import nadam
from torchopt_lite.alias.nadamw import nadamw
from torchopt_lite.alias.noisy_sgd import noisy_sgd
from torchopt_lite.alias.novograd import novograd
from torchopt_lite.alias.optimistic_adam import optimistic_adam
from torchopt_lite.alias.optimistic_gradient_descent import optimistic_gradient_descent
from torchopt_lite.alias.polyak_sgd import polyak_sgd
from torchopt_lite.alias.prodigy import prodigy
from torchopt_lite.alias.radam import radam
from torchopt_lite.alias.rmsprop import rmsprop
from torchopt_lite.alias.rprop import rprop
from torchopt_lite.alias.sam import sam
from torchopt_lite.alias.schedule_free_adamw import schedule_free_adamw
from torchopt_lite.alias.schedule_free_sgd import schedule_free_sgd
from torchopt_lite.alias.sgd import sgd
from torchopt_lite.alias.sign_sgd import sign_sgd
from torchopt_lite.alias.signum import signum
from torchopt_lite.alias.sm3 import sm3
from torchopt_lite.alias.sophia import sophia
from torchopt_lite.alias.yogi import yogi

__all__ = [
    "adabelief",
    "adadelta",
    "adafactor",
    "adagrad",
    "adam",
    "adamax",
    "adamaxw",
    "adamw",
    "adan",
    "amsgrad",
    "asgd",
    "fromage",
    "lamb",
    "lars",
    "lbfgs",
    "lion",
    "muon",
    "nadam",
    "nadamw",
    "noisy_sgd",
    "novograd",
    "optimistic_adam",
    "optimistic_gradient_descent",
    "polyak_sgd",
    "prodigy",
    "radam",
    "rmsprop",
    "rprop",
    "sam",
    "schedule_free_adamw",
    "schedule_free_sgd",
    "sgd",
    "sign_sgd",
    "signum",
    "sm3",
    "sophia",
    "yogi",
    "utils",
]
