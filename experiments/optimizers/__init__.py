"""The optimizers a grid can use: one registry entry per rule.

``get_rule(name)`` gives a :class:`Rule` (the ``amsgrad`` library's rules are
registered on import, optax's others are found by name); ``Optimizer.of(name,
**values)`` a rule with its values, what an engine steps; ``rule_from_function`` makes
a rule of any optax-style function. See :mod:`experiments.optimizers.registry`.
"""
from experiments.optimizers import fixes, library  # noqa: F401  (they register their rules)
from experiments.optimizers.from_optax import optax_rule, rule_from_function
from experiments.optimizers.registry import (Family, Hyperparameter, Optimizer, Rule,
                                             UnknownRule, add_finder, get_rule, is_rule, label,
                                             register_rule, registered_rules, registry_version,
                                             rule_names)

add_finder(optax_rule)  # any rule optax ships, by its name

__all__ = ["Family", "Hyperparameter", "Optimizer", "Rule", "UnknownRule", "get_rule",
           "is_rule", "label", "register_rule", "registered_rules", "registry_version",
           "rule_names", "rule_from_function", "add_finder"]
