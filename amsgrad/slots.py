"""The names of every rule's optimizer state, the same in both faces.

The Lasagne-style face keeps a slot as a shared variable ``<param.name>.<slot>``
(``p0.m``) beside one step counter ``t``; the optax face keeps it in the state
NamedTuple's field :data:`FIELDS` ``[slot]`` (``mu``) beside ``count``. A checkpoint
names it ``opt:<slot>:<param>`` in both, so it moves between faces.
"""

#: slot -> optax state field, for every rule.
FIELDS = {"m": "mu", "v": "nu", "v_hat": "nu_max", "velocity": "velocity"}

#: The step counter: Lasagne's shared ``t`` is optax's ``count`` (steps taken so far).
COUNTER = {"slot": "t", "field": "count"}

_ADAM = ("m", "v")
_ADAM_MAX = ("m", "v", "v_hat")

#: rule -> its slots, in the order its step function takes them. ``adamw`` and
#: ``adam_family`` add ``v_hat`` with ``amsgrad=True``, ``adabound`` with
#: ``amsbound=True``; SGD has no state (and no counter in the optax face).
SLOTS = {
    "sgd": (),
    "momentum": ("velocity",),
    "nesterov_momentum": ("velocity",),
    "adam": _ADAM,
    "amsgrad": _ADAM_MAX,
    "adamw": _ADAM,
    "adam_family": _ADAM,
    "adamnc": _ADAM,
    "adabound": _ADAM,
    "amsbound": _ADAM_MAX,
    "yogi": _ADAM,
    "adabelief": _ADAM,
    "adopt": _ADAM,
}


def slot_fields(rule, keep_max=False):
    """``{optax field: slot}`` of ``rule``; ``keep_max`` adds ``v_hat`` to the rules
    that keep it only on request (``adam_family``, ``adamw``, ``adabound``)."""
    slots = SLOTS[rule]
    if keep_max and "v_hat" not in slots and rule in ("adam_family", "adamw", "adabound"):
        slots = slots + ("v_hat",)
    return {FIELDS[slot]: slot for slot in slots}
