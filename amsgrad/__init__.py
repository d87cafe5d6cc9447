"""AMSGrad and Adam as Lasagne-style update rules (Theano/PyTensor) and optax transforms.

``from amsgrad import amsgrad, adam`` gives the Lasagne-style functions;
``amsgrad.optax`` holds the same rules for JAX. The step math lives once, in
:mod:`amsgrad.rules`.
"""
from .rules import VARIANTS
from .updates import (adam, adam_family, adamw, amsgrad, get_or_compute_grads, momentum,
                      nesterov_momentum, sgd)

__all__ = ["adam", "adam_family", "adamw", "amsgrad", "get_or_compute_grads", "momentum",
           "nesterov_momentum", "sgd", "VARIANTS"]
__version__ = "0.1.0"
