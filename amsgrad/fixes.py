"""The step math of the rules proposed since (or beside) AMSGrad, written once.

AdamNC (the AMSGrad paper's other fix), AdaBound and AMSBound, Yogi, AdaBelief and
ADOPT, in the style of :mod:`amsgrad.rules`: each function takes an array namespace
``ns``, a gradient, the rule's state before the step and the step number ``t``
(starting at 1), and returns ``(step, *new_state)``; the new parameter is
``param - step``. The faces (:mod:`amsgrad.updates_fixes`, :mod:`amsgrad.optax_fixes`)
only allocate the state and call these functions.

``docs/variants.md`` says which published form each default follows and why.
"""
from .rules import adam_step, clip, ema, select

#: AdaBound's forms: the authors' package (default) or the paper's pseudo-code.
ADABOUND_VARIANTS = ("authors", "paper")
#: AdaBelief's forms: the residual against the new mean (paper, default) or the old one.
ADABELIEF_VARIANTS = ("paper", "lagged")


def check_variant(variant, allowed):
    """Raise ValueError unless ``variant`` is one of ``allowed``."""
    if variant not in allowed:
        raise ValueError(f"variant must be one of {allowed}, got {variant!r}")


def _corrected(ns, moment, decay, t, bias_correction):
    """``moment / (1 - decay**t)`` where ``bias_correction`` holds."""
    return select(ns, bias_correction, moment / (ns.constant(1) - decay ** t), moment)


def adamnc_step(ns, g, m, v, t, learning_rate, beta1, beta1_decay, epsilon):
    """One AdamNC step: Adam with ``beta1_t = beta1 * beta1_decay**(t-1)`` and
    ``beta2_t = 1 - 1/t``, so ``v_t`` is the plain mean of all squared gradients so far.

    ::

        m_t = beta1_t * m + (1 - beta1_t) * g
        v_t = (1 - 1/t) * v + g**2 / t
        step = learning_rate * m_t / (sqrt(v_t) + epsilon)

    The paper's ``alpha_t = alpha / sqrt(t)`` is a schedule given from outside, as
    ``learning_rate``; it has no epsilon and no bias correction (``v_t`` is an unbiased
    mean). Returns ``(step, m_t, v_t)``.

    References
    ----------
    .. [1] Reddi, S. J., Kale, S., & Kumar, S. (2018). On the Convergence of Adam and
           Beyond. ICLR 2018, section 5. https://openreview.net/forum?id=ryQu7f-RZ
    """
    one = ns.constant(1)
    beta1_t = beta1 * beta1_decay ** (t - one)
    step, m_t, v_t, _ = adam_step(ns, g, m, v, None, t, learning_rate, beta1_t, one - one / t,
                                  epsilon, bias_correction=False)
    return step, m_t, v_t


def adabound_step(ns, g, m, v, v_hat, t, learning_rate, initial_learning_rate, beta1, beta2,
                  epsilon, final_lr, gamma, amsbound=False, variant="authors"):
    """One AdaBound (or, with ``amsbound``, AMSBound) step.

    Adam's per-coordinate rate is clipped into bounds that tighten toward the SGD rate
    ``final = final_lr * learning_rate / initial_learning_rate`` (a schedule of the
    learning rate moves the bounds too, as in the authors' code)::

        lower = final * (1 - 1 / (gamma * t + 1)),  upper = final * (1 + 1 / (gamma * t))

    ``variant='authors'`` (the ``adabound`` package; PyTorch)::

        rate = clip(lr * sqrt(1 - beta2**t) / (1 - beta1**t) / (sqrt(v_hat_t) + eps),
                    lower, upper)
        step = rate * m_t

    ``variant='paper'`` (Algorithms 2 and 3): ``rate = clip(lr / (sqrt(v_hat_t) + eps),
    lower, upper) / sqrt(t)``, no bias correction. AMSBound takes the running maximum
    of the raw ``v`` (``v_hat_t = max(v_hat, v_t)``), and epsilon is added after the
    square root, in both. ``v_hat`` is ``None`` when the maximum is not kept.

    Returns ``(step, m_t, v_t, v_hat_t)``.

    References
    ----------
    .. [1] Luo, L., Xiong, Y., Liu, Y., & Sun, X. (2019). Adaptive Gradient Methods with
           Dynamic Bound of Learning Rate. ICLR 2019.
           https://openreview.net/forum?id=Bkg3g2R9FX
    """
    check_variant(variant, ADABOUND_VARIANTS)
    one = ns.constant(1)
    m_t = ema(ns, g, m, beta1)
    v_t = ema(ns, g ** 2, v, beta2)
    if v_hat is not None and amsbound is not False:
        v_hat_t = select(ns, amsbound, ns.maximum(v_hat, v_t), v_t)
    else:
        v_hat_t = v_t
    final = final_lr * learning_rate / initial_learning_rate
    lower = final * (one - one / (gamma * t + one))
    upper = final * (one + one / (gamma * t))
    denominator = ns.sqrt(v_hat_t) + epsilon
    if variant == "authors":
        step_size = learning_rate * ns.sqrt(one - beta2 ** t) / (one - beta1 ** t)
        rate = clip(ns, step_size / denominator, lower, upper)
    else:
        rate = clip(ns, learning_rate / denominator, lower, upper) / ns.sqrt(t)
    return rate * m_t, m_t, v_t, (v_hat_t if v_hat is not None else None)


def yogi_step(ns, g, m, v, t, learning_rate, beta1, beta2, epsilon, epsilon_root=0.0,
              bias_correction=True):
    """One Yogi step: Adam whose second moment moves additively, by the sign of
    ``v - g**2``, so it cannot fall fast after a large gradient::

        m_t = beta1 * m + (1 - beta1) * g
        v_t = v - (1 - beta2) * sign(v - g**2) * g**2
        step = lr * m_hat / (sqrt(v_hat + epsilon_root) + epsilon)

    with ``m_hat = m_t / (1 - beta1**t)``, ``v_hat = v_t / (1 - beta2**t)`` when
    ``bias_correction`` (``optax.yogi``; the paper's Algorithm 2 omits it). The faces
    start ``m`` and ``v`` at ``initial_accumulator_value`` as optax does.
    Returns ``(step, m_t, v_t)``.

    References
    ----------
    .. [1] Zaheer, M., Reddi, S., Sachan, D., Kale, S., & Kumar, S. (2018). Adaptive
           Methods for Nonconvex Optimization. NeurIPS 2018.
    """
    one = ns.constant(1)
    m_t = ema(ns, g, m, beta1)
    g2 = g * g
    v_t = v - (one - beta2) * ns.sign(v - g2) * g2
    m_hat = _corrected(ns, m_t, beta1, t, bias_correction)
    v_hat = _corrected(ns, v_t, beta2, t, bias_correction)
    return learning_rate * m_hat / (ns.sqrt(v_hat + epsilon_root) + epsilon), m_t, v_t


def adabelief_step(ns, g, m, v, t, learning_rate, beta1, beta2, epsilon, epsilon_root,
                   variant="paper"):
    """One AdaBelief step: Adam with the second moment of the residual ``g - m_t``::

        m_t = beta1 * m + (1 - beta1) * g
        v_t = beta2 * v + (1 - beta2) * (g - m_t)**2 + epsilon_root
        step = lr * (m_t / (1 - beta1**t)) / (sqrt(v_t / (1 - beta2**t)) + epsilon)

    ``variant='paper'`` (Algorithm 2; the authors' code; optax 0.2.4 and later) takes
    the residual against the new ``m_t``; ``'lagged'`` against the previous ``m``, as
    optax did before (0.2.1 here). Returns ``(step, m_t, v_t)``.

    References
    ----------
    .. [1] Zhuang, J., et al. (2020). AdaBelief Optimizer: Adapting Stepsizes by the
           Belief in Observed Gradients. NeurIPS 2020. https://arxiv.org/abs/2010.07468
    """
    check_variant(variant, ADABELIEF_VARIANTS)
    m_t = ema(ns, g, m, beta1)
    residual = g - (m_t if variant == "paper" else m)
    v_t = ema(ns, residual ** 2, v, beta2) + epsilon_root
    m_hat = _corrected(ns, m_t, beta1, t, True)
    v_hat = _corrected(ns, v_t, beta2, t, True)
    return learning_rate * m_hat / (ns.sqrt(v_hat) + epsilon), m_t, v_t


def adopt_step(ns, g, m, v, t, learning_rate, beta1, beta2, epsilon, use_clipping=True):
    """One ADOPT step: the gradient is normalised by the *previous* second moment, then
    averaged into the momentum, which is the step::

        m_t = beta1 * m + (1 - beta1) * clip(g / max(sqrt(v), epsilon), (t-1)**0.25)
        v_t = beta2 * v + (1 - beta2) * g**2
        step = learning_rate * m_t

    The first step only sets ``v_1 = g**2`` (``m`` stays, the step is ``lr * m``, zero
    from a fresh start): there is no earlier ``v`` to normalise by. ``use_clipping``
    clips the normalised gradient into ``[-(t-1)**0.25, (t-1)**0.25]``, as the authors'
    code and ``optax.contrib.adopt`` do by default; the paper's Algorithm 2 has no clip.
    Returns ``(step, m_t, v_t)``.

    References
    ----------
    .. [1] Taniguchi, S., et al. (2024). ADOPT: Modified Adam Can Converge with Any
           beta2 with the Optimal Rate. NeurIPS 2024. https://arxiv.org/abs/2411.02853
    """
    one = ns.constant(1)
    normed = g / ns.maximum(ns.sqrt(v), epsilon)
    if use_clipping:
        bound = (t - one) ** 0.25
        normed = clip(ns, normed, -bound, bound)
    later = t > one
    m_t = ns.where(later, ema(ns, normed, m, beta1), m)
    v_t = ns.where(later, ema(ns, g * g, v, beta2), g * g)
    return learning_rate * m_t, m_t, v_t
