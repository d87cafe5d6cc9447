"""The optimizers a grid can use: one registry entry per rule.

``get_rule(name)`` gives a :class:`Rule` (the ``amsgrad`` library's rules are
registered on import, optax's others are found by name); ``Optimizer.of(name,
**values)`` a rule with its values, what an engine steps. See
:mod:`experiments.optimizers.registry`.
"""
from experiments.optimizers.registry import (Family, Hyperparameter, Optimizer, Rule,  # noqa: F401
                                             UnknownRule, get_rule, is_rule, label,
                                             register_rule, registered_rules, registry_version,
                                             rule_names)
from experiments.optimizers import library  # noqa: F401,E402  (registers the library's rules)


def rule_from_function(name, fn, label=None, reference=""):
    """A :class:`Rule` of an optax-style rule function (see
    :func:`experiments.optimizers.from_optax.rule_from_function`; imports optax)."""
    from experiments.optimizers import from_optax
    return from_optax.rule_from_function(name, fn, label, reference)
