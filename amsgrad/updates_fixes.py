"""AdamNC, AdaBound, AMSBound, Yogi, AdaBelief and ADOPT as Lasagne-style rules.

Each function takes a loss or a list of gradients and a list of shared variables, and
returns the ``OrderedDict`` of updates of :mod:`amsgrad.updates` (Theano or PyTensor),
with its state named ``<param.name>.<slot>`` (:data:`amsgrad.slots.SLOTS`) beside one
step counter ``t``. The step math is :mod:`amsgrad.fixes`; ``docs/variants.md`` says
which published form each default follows.
"""
import numbers

from . import fixes
from .updates import elementwise_updates


def adamnc(loss_or_grads, params, learning_rate=0.001, beta1=0.9, beta1_decay=1 - 1e-8,
           epsilon=1e-8):
    """AdamNC updates (Reddi et al., 2018, section 5): ``v`` is the plain mean of all
    squared gradients so far, and ``beta1`` decays as ``beta1 * beta1_decay**(t-1)``.

    Parameters
    ----------
    loss_or_grads : symbolic expression or list of expressions
    params : list of shared variables
    learning_rate : float or symbolic scalar
        The paper's ``alpha_t = alpha / sqrt(t)`` is a schedule: set it from outside.
    beta1 : float
    beta1_decay : float
        The paper's ``lambda`` (its theory asks ``lambda < 1``; its experiments do not
        give one). The default ``1 - 1e-8`` rounds to 1.0 in float32: constant ``beta1``.
    epsilon : float
        Added to ``sqrt(v)``; not in the paper, keeps a zero gradient's step defined.

    Returns
    -------
    OrderedDict
        Updates for the parameters, ``m``, ``v`` and the step counter ``t``.

    References
    ----------
    .. [1] Reddi, S. J., Kale, S., & Kumar, S. (2018). On the Convergence of Adam and
           Beyond. ICLR 2018. https://openreview.net/forum?id=ryQu7f-RZ
    """
    return elementwise_updates(loss_or_grads, params, fixes.adamnc_step, ("m", "v"),
                               dict(learning_rate=learning_rate, beta1=beta1,
                                    beta1_decay=beta1_decay, epsilon=epsilon))


def _initial(learning_rate, initial_learning_rate):
    """AdaBound's base rate: given, or the learning rate's value now (a number, or a
    shared variable's current value, as the authors' package reads ``lr`` once)."""
    if initial_learning_rate is not None:
        return initial_learning_rate
    if isinstance(learning_rate, numbers.Number):
        return learning_rate
    if hasattr(learning_rate, "get_value"):
        return float(learning_rate.get_value())
    raise ValueError("a symbolic learning_rate needs initial_learning_rate (the base rate "
                     "that final_lr is relative to)")


def adabound(loss_or_grads, params, learning_rate=0.001, beta1=0.9, beta2=0.999,
             epsilon=1e-8, final_lr=0.1, gamma=1e-3, amsbound=False,
             initial_learning_rate=None, variant="authors"):
    """AdaBound updates (Luo et al., 2019): Adam's per-coordinate rate clipped into
    bounds that close in on the SGD rate ``final_lr`` (:func:`amsgrad.fixes.adabound_step`).

    Parameters
    ----------
    loss_or_grads : symbolic expression or list of expressions
    params : list of shared variables
    learning_rate : float or symbolic scalar
    beta1, beta2, epsilon : float
        As Adam's; epsilon is added to ``sqrt(v)`` (authors' package).
    final_lr : float
        The SGD rate the bounds tend to, for ``learning_rate == initial_learning_rate``;
        it follows a schedule: ``final_lr * learning_rate / initial_learning_rate``.
    gamma : float
        How fast the bounds close in.
    amsbound : bool
        Keep the running maximum of ``v`` (AMSBound), in ``<param>.v_hat``.
    initial_learning_rate : float or None
        The base rate; default: ``learning_rate`` when it is a number, the current value
        when it is a shared variable. Required for another symbolic learning rate.
    variant : {'authors', 'paper'}
        The ``adabound`` package (default) or the paper's pseudo-code (``docs/variants.md``).

    Returns
    -------
    OrderedDict
        Updates for the parameters, ``m``, ``v`` (and ``v_hat``) and the counter ``t``.

    References
    ----------
    .. [1] Luo, L., Xiong, Y., Liu, Y., & Sun, X. (2019). Adaptive Gradient Methods with
           Dynamic Bound of Learning Rate. ICLR 2019.
           https://openreview.net/forum?id=Bkg3g2R9FX
    """
    fixes.check_variant(variant, fixes.ADABOUND_VARIANTS)
    hyper = dict(learning_rate=learning_rate,
                 initial_learning_rate=_initial(learning_rate, initial_learning_rate),
                 beta1=beta1, beta2=beta2, epsilon=epsilon, final_lr=final_lr, gamma=gamma,
                 amsbound=amsbound, variant=variant)
    return elementwise_updates(loss_or_grads, params, fixes.adabound_step,
                               ("m", "v", "v_hat" if amsbound else None), hyper)


def amsbound(loss_or_grads, params, learning_rate=0.001, beta1=0.9, beta2=0.999,
             epsilon=1e-8, final_lr=0.1, gamma=1e-3, initial_learning_rate=None,
             variant="authors"):
    """AMSBound updates (Luo et al., 2019): :func:`adabound` with ``amsbound=True``, the
    bounds applied to AMSGrad's rate ``1 / (sqrt(max_s v_s) + epsilon)``."""
    return adabound(loss_or_grads, params, learning_rate, beta1, beta2, epsilon, final_lr,
                    gamma, amsbound=True, initial_learning_rate=initial_learning_rate,
                    variant=variant)


def yogi(loss_or_grads, params, learning_rate=0.001, beta1=0.9, beta2=0.999, epsilon=1e-3,
         epsilon_root=0.0, initial_accumulator_value=1e-6, bias_correction=True):
    """Yogi updates (Zaheer et al., 2018), as ``optax.yogi``
    (:func:`amsgrad.fixes.yogi_step`).

    Parameters
    ----------
    loss_or_grads : symbolic expression or list of expressions
    params : list of shared variables
    learning_rate : float or symbolic scalar
    beta1, beta2 : float
    epsilon : float
        Added to ``sqrt(v_hat + epsilon_root)``; Yogi's default is large, 1e-3.
    epsilon_root : float
        Added under the square root (optax's ``eps_root``).
    initial_accumulator_value : float
        Where ``m`` and ``v`` start (optax starts both there).
    bias_correction : bool
        Divide by ``1 - beta**t`` as optax does; off is the paper's Algorithm 2.

    Returns
    -------
    OrderedDict
        Updates for the parameters, ``m``, ``v`` and the step counter ``t``.

    References
    ----------
    .. [1] Zaheer, M., Reddi, S., Sachan, D., Kale, S., & Kumar, S. (2018). Adaptive
           Methods for Nonconvex Optimization. NeurIPS 2018.
    """
    hyper = dict(learning_rate=learning_rate, beta1=beta1, beta2=beta2, epsilon=epsilon,
                 epsilon_root=epsilon_root, bias_correction=bias_correction)
    return elementwise_updates(loss_or_grads, params, fixes.yogi_step, ("m", "v"), hyper,
                               fill=initial_accumulator_value)


def adabelief(loss_or_grads, params, learning_rate=0.001, beta1=0.9, beta2=0.999,
              epsilon=1e-16, epsilon_root=1e-16, variant="paper"):
    """AdaBelief updates (Zhuang et al., 2020), as ``optax.adabelief``
    (:func:`amsgrad.fixes.adabelief_step`): Adam with the second moment of the residual
    ``g - m_t``, kept in ``<param>.v``.

    Parameters
    ----------
    loss_or_grads : symbolic expression or list of expressions
    params : list of shared variables
    learning_rate : float or symbolic scalar
    beta1, beta2 : float
    epsilon : float
        Added to ``sqrt(v_hat)``.
    epsilon_root : float
        Added to ``v`` at every step (the paper's epsilon inside ``s_t``).
    variant : {'paper', 'lagged'}
        Residual against the new ``m_t`` (paper, optax >= 0.2.4) or the previous ``m``.

    References
    ----------
    .. [1] Zhuang, J., et al. (2020). AdaBelief Optimizer: Adapting Stepsizes by the
           Belief in Observed Gradients. NeurIPS 2020. https://arxiv.org/abs/2010.07468
    """
    fixes.check_variant(variant, fixes.ADABELIEF_VARIANTS)
    hyper = dict(learning_rate=learning_rate, beta1=beta1, beta2=beta2, epsilon=epsilon,
                 epsilon_root=epsilon_root, variant=variant)
    return elementwise_updates(loss_or_grads, params, fixes.adabelief_step, ("m", "v"), hyper)


def adopt(loss_or_grads, params, learning_rate=0.001, beta1=0.9, beta2=0.9999, epsilon=1e-6,
          use_clipping=True):
    """ADOPT updates (Taniguchi et al., 2024), as ``optax.contrib.adopt``
    (:func:`amsgrad.fixes.adopt_step`): the gradient normalised by the previous ``v``,
    then averaged into ``m``; the first step only sets ``v``.

    Parameters
    ----------
    loss_or_grads : symbolic expression or list of expressions
    params : list of shared variables
    learning_rate : float or symbolic scalar
    beta1, beta2 : float
    epsilon : float
        Floor of ``sqrt(v)`` (``max(sqrt(v), epsilon)``).
    use_clipping : bool
        Clip the normalised gradient into ``+-(t-1)**0.25`` (authors' code and optax);
        off is the paper's Algorithm 2.

    References
    ----------
    .. [1] Taniguchi, S., et al. (2024). ADOPT: Modified Adam Can Converge with Any
           beta2 with the Optimal Rate. NeurIPS 2024. https://arxiv.org/abs/2411.02853
    """
    hyper = dict(learning_rate=learning_rate, beta1=beta1, beta2=beta2, epsilon=epsilon,
                 use_clipping=use_clipping)
    return elementwise_updates(loss_or_grads, params, fixes.adopt_step, ("m", "v"), hyper)
