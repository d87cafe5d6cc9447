"""The later fixes of Adam as registry entries: AdamNC, AdaBound and AMSBound, Yogi,
AdaBelief, ADOPT (:mod:`amsgrad.fixes`, both faces in the library).

Each is a family of its own (AdaBound and AMSBound one, the maximum a per-run switch),
its optax face :mod:`amsgrad.optax` (per-run values broadcast natively), its Lasagne
face :mod:`amsgrad.updates_fixes`, so both engines train them. Defaults are those of
the implementations people use; ``docs/variants.md`` says where the papers differ and
how to ask for the papers' forms (``variant``).
"""
from amsgrad import fixes, updates_fixes
from experiments.config.checks import INF, boolean, choice, number
from experiments.optimizers.library import (BETA1, BETA2, BIAS_CORRECTION, _face,
                                            library_family)
from experiments.optimizers.registry import LEARNING_RATE, Hyperparameter, Rule, register_rule

__all__ = ["FIXES"]


def _epsilon(default):
    return Hyperparameter("epsilon", default, number(0, INF), "eps")


def _variant(choices, default):
    # compiled into the program: runs of another form train apart
    return Hyperparameter("variant", default, choice("variant", choices), "variant",
                          per_run=False, type=str)


def _family(name, optax_name, lasagne, slots=("m", "v"), **options):
    """A family whose optax face is ``amsgrad.optax.<optax_name>`` and Lasagne face
    ``lasagne``, its state ``slots`` (of one run's values)."""
    def transform(values, runs=()):
        return getattr(_face(), optax_name)(**values, runs=runs)
    return library_family(name, transform, slots if callable(slots) else lambda v: slots,
                          lambda loss, params, learning_rate, **values: lasagne(
                              loss, params, learning_rate, **values), **options)


ADAMNC = _family("adamnc", "adamnc", updates_fixes.adamnc)
ADABOUND = _family("adabound", "adabound", updates_fixes.adabound,
                   slots=lambda v: ("m", "v", "v_hat") if v["amsbound"] is not False
                   else ("m", "v"), static=("variant",), off={"amsbound": False},
                   initial_rate=True)
YOGI = _family("yogi", "yogi", updates_fixes.yogi, static=("initial_accumulator_value",))
ADABELIEF = _family("adabelief", "adabelief", updates_fixes.adabelief, static=("variant",))
ADOPT = _family("adopt", "adopt", updates_fixes.adopt, static=("use_clipping",))

_BOUND = (LEARNING_RATE, BETA1, BETA2, _epsilon(1e-8),
          Hyperparameter("final_lr", 0.1, number(0, INF, low_open=True), "final_lr"),
          Hyperparameter("gamma", 1e-3, number(0, INF, low_open=True), "gamma"),
          _variant(fixes.ADABOUND_VARIANTS, "authors"))

FIXES = (
    Rule("adamnc", ADAMNC, (
        LEARNING_RATE, BETA1,
        Hyperparameter("beta1_decay", 1 - 1e-8, number(0, 1), "b1_decay"), _epsilon(1e-8)),
        label="AdamNC", colors=("#8c564b", "#c49c94"),
        reference="Reddi, Kale & Kumar (2018), On the Convergence of Adam and Beyond, "
                  "section 5. ICLR."),
    Rule("adabound", ADABOUND, _BOUND, {"amsbound": False}, "AdaBound",
         "Luo, Xiong, Liu & Sun (2019), Adaptive Gradient Methods with Dynamic Bound of "
         "Learning Rate. ICLR.", ("#17becf", "#9edae5")),
    Rule("amsbound", ADABOUND, _BOUND, {"amsbound": True}, "AMSBound",
         "Luo, Xiong, Liu & Sun (2019), ibid.", ("#e377c2", "#f7b6d2")),
    Rule("yogi", YOGI, (
        LEARNING_RATE, BETA1, BETA2, _epsilon(1e-3),
        Hyperparameter("epsilon_root", 0.0, number(0, INF), "eps_root"),
        Hyperparameter("initial_accumulator_value", 1e-6, number(0, INF), "v0",
                       per_run=False),
        BIAS_CORRECTION), label="Yogi", colors=("#bcbd22", "#dbdb8d"),
        reference="Zaheer, Reddi, Sachan, Kale & Kumar (2018), Adaptive Methods for "
                  "Nonconvex Optimization. NeurIPS."),
    Rule("adabelief", ADABELIEF, (
        LEARNING_RATE, BETA1, BETA2, _epsilon(1e-16),
        Hyperparameter("epsilon_root", 1e-16, number(0, INF), "eps_root"),
        _variant(fixes.ADABELIEF_VARIANTS, "paper")), label="AdaBelief",
        colors=("#1b9e77", "#8fd3bd"),
        reference="Zhuang et al. (2020), AdaBelief Optimizer: Adapting Stepsizes by the "
                  "Belief in Observed Gradients. NeurIPS."),
    Rule("adopt", ADOPT, (
        LEARNING_RATE, BETA1, Hyperparameter("beta2", 0.9999, number(0, 1, high_open=True),
                                             "b2"), _epsilon(1e-6),
        Hyperparameter("use_clipping", True, boolean, "clip", per_run=False, type=bool)),
        label="ADOPT", colors=("#393b79", "#9c9ede"),
        reference="Taniguchi et al. (2024), ADOPT: Modified Adam Can Converge with Any "
                  "beta2 with the Optimal Rate. NeurIPS."),
)
for _rule in FIXES:
    register_rule(_rule)
