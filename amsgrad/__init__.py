"""AMSGrad, Adam and the rules that followed as Lasagne-style update rules
(Theano/PyTensor) and optax transforms.

``from amsgrad import amsgrad, adam, adabound`` gives the Lasagne-style functions;
``amsgrad.optax`` holds the same rules for JAX. The step math lives once, in
:mod:`amsgrad.rules` (Adam family, momentum) and :mod:`amsgrad.fixes` (AdamNC,
AdaBound/AMSBound, Yogi, AdaBelief, ADOPT); :data:`SLOTS` names every rule's state.
"""
from .fixes import ADABELIEF_VARIANTS, ADABOUND_VARIANTS
from .rules import VARIANTS
from .slots import FIELDS, SLOTS
from .updates import (adam, adam_family, adamw, amsgrad, get_or_compute_grads, momentum,
                      nesterov_momentum, sgd)
from .updates_fixes import adabelief, adabound, adamnc, adopt, amsbound, yogi

__all__ = ["adam", "adam_family", "adamw", "amsgrad", "get_or_compute_grads", "momentum",
           "nesterov_momentum", "sgd", "adamnc", "adabound", "amsbound", "yogi", "adabelief",
           "adopt", "VARIANTS", "ADABOUND_VARIANTS", "ADABELIEF_VARIANTS", "SLOTS", "FIELDS"]
__version__ = "0.1.0"
