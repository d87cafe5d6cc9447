"""The models, written once in Lasagne's vocabulary as plain layer specs.

:mod:`~experiments.models.layers` holds the layer types (each owns its shapes,
parameters, FLOPs and initial values); :mod:`~experiments.models.specs` the model
registry (the post's four models: logreg, cifarnet, small_vgg, vgg, each built for a
dataset's input shape and classes) and what follows from a spec (shapes, initial
arrays, costs).
"""
from experiments.models.layers import *  # noqa: F401,F403
from experiments.models.layers import __all__ as _layers
from experiments.models.specs import *  # noqa: F401,F403
from experiments.models.specs import __all__ as _specs

__all__ = list(_layers) + list(_specs)
