"""The per-parameter step math, written once for every array library.

Each function takes an array namespace ``ns`` (see :func:`namespace`) and plain
arrays or symbolic tensors, and returns new arrays; nothing here allocates state.
The Lasagne-style face (:mod:`amsgrad.updates`, Theano or PyTensor) and the optax
face (:mod:`amsgrad.optax`, JAX) both call these functions, so the two faces run
the same formulas by construction.

Switches (``bias_correction``, ``amsgrad``) may be Python bools, which pick a
branch while the graph is built (the Theano graph then equals the original
Lasagne code), or boolean arrays, which select per element (a vectorised grid
carries one value per run).
"""
from types import SimpleNamespace

import numpy as np

#: Where the AMSGrad max is taken and where epsilon enters, by library.
VARIANTS = ("lasagne", "pytorch", "optax")


def namespace(module_name):
    """Array namespace for ``'numpy'``, ``'jax'``, ``'theano'`` or ``'pytensor'``.

    Only the operations the rules need: ``sqrt``, ``maximum``, ``minimum``, ``sign``,
    ``where`` and ``constant`` (Theano needs ``T.constant(1)`` so float32 graphs are not
    upcast).
    """
    if module_name == "numpy":
        return SimpleNamespace(sqrt=np.sqrt, maximum=np.maximum, minimum=np.minimum,
                               sign=np.sign, where=np.where, constant=lambda x: x)
    if module_name == "jax":
        import jax.numpy as jnp
        return SimpleNamespace(sqrt=jnp.sqrt, maximum=jnp.maximum, minimum=jnp.minimum,
                               sign=jnp.sign, where=jnp.where, constant=lambda x: x)
    if module_name == "theano":
        import theano.tensor as T
        return SimpleNamespace(sqrt=T.sqrt, maximum=T.maximum, minimum=T.minimum,
                               sign=T.sgn, where=T.switch, constant=T.constant)
    if module_name == "pytensor":
        import pytensor.tensor as pt
        return SimpleNamespace(sqrt=pt.sqrt, maximum=pt.maximum, minimum=pt.minimum,
                               sign=pt.sign, where=pt.switch, constant=pt.constant)
    raise ValueError(f"unknown array library {module_name!r}")


def select(ns, flag, if_true, if_false):
    """``if_true if flag else if_false``: at build time for a bool, per element otherwise."""
    if isinstance(flag, (bool, np.bool_)):
        return if_true if flag else if_false
    return ns.where(flag, if_true, if_false)


def ema(ns, x, average, decay):
    """``decay * average + (1 - decay) * x``: the moving average every rule keeps."""
    return decay * average + (ns.constant(1) - decay) * x


def clip(ns, x, lower, upper):
    """``x`` clipped into ``[lower, upper]`` elementwise (``torch.clamp``, ``jnp.clip``)."""
    return ns.minimum(ns.maximum(x, lower), upper)


def check_variant(variant):
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")


def adam_step(ns, g, m, v, v_hat, t, learning_rate, beta1, beta2, epsilon,
              bias_correction=True, amsgrad=False, variant="lasagne"):
    """One Adam or AMSGrad step for one parameter.

    Parameters
    ----------
    ns : namespace
        From :func:`namespace`.
    g, m, v : arrays
        Gradient, first and second moment estimates before this step.
    v_hat : array or None
        Running maximum (AMSGrad); ``None`` when ``amsgrad`` is ``False``.
    t : scalar
        Step number of this call, starting at 1 (one counter per update call).
    learning_rate, beta1, beta2, epsilon : scalars or arrays
        Hyperparameters; arrays broadcast against the parameter.
    bias_correction, amsgrad : bool or boolean array
    variant : {'lasagne', 'pytorch', 'optax'}
        ``'lasagne'`` (the experiment's rule, also Keras 3)::

            a_t = lr * sqrt(1 - beta2**t) / (1 - beta1**t)   (lr without correction)
            v_hat_t = max(v_hat, v_t)                          (raw v)
            step = a_t * m_t / (sqrt(v_hat_t) + epsilon)

        ``'pytorch'``: the max on raw v, epsilon added after correcting it:
        ``step = lr / (1 - beta1**t) * m_t / (sqrt(v_hat_t) / sqrt(1 - beta2**t) + epsilon)``.
        ``'optax'``: the max taken on the corrected ``v_t / (1 - beta2**t)``:
        ``step = lr * (m_t / (1 - beta1**t)) / (sqrt(v_hat_t) + epsilon)``.
        Without bias correction the three coincide.

    Returns
    -------
    step, m_t, v_t, v_hat_t
        The new parameter is ``param - step``; ``v_hat_t`` is ``None`` if ``v_hat`` is.

    References
    ----------
    .. [1] Kingma, D. P., & Ba, J. (2015). Adam: A Method for Stochastic Optimization.
           ICLR 2015. https://arxiv.org/abs/1412.6980
    .. [2] Reddi, S. J., Kale, S., & Kumar, S. (2018). On the Convergence of Adam and
           Beyond. ICLR 2018. https://openreview.net/forum?id=ryQu7f-RZ
    """
    check_variant(variant)
    one = ns.constant(1)
    m_t = ema(ns, g, m, beta1)
    v_t = ema(ns, g ** 2, v, beta2)
    c1 = one - beta1 ** t
    c2 = one - beta2 ** t
    use_max = v_hat is not None and amsgrad is not False

    if variant == "optax":
        v_c = select(ns, bias_correction, v_t / c2, v_t)
        v_hat_t = select(ns, amsgrad, ns.maximum(v_hat, v_c), v_c) if use_max else v_c
        m_c = select(ns, bias_correction, m_t / c1, m_t)
        step = learning_rate * m_c / (ns.sqrt(v_hat_t) + epsilon)
        return step, m_t, v_t, (v_hat_t if v_hat is not None else None)

    v_hat_t = select(ns, amsgrad, ns.maximum(v_hat, v_t), v_t) if use_max else v_t
    if variant == "lasagne":
        a_t = select(ns, bias_correction, learning_rate * ns.sqrt(c2) / c1, learning_rate)
        step = a_t * m_t / (ns.sqrt(v_hat_t) + epsilon)
    else:  # pytorch
        corrected = learning_rate / c1 * m_t / (ns.sqrt(v_hat_t) / ns.sqrt(c2) + epsilon)
        plain = learning_rate * m_t / (ns.sqrt(v_hat_t) + epsilon)
        step = select(ns, bias_correction, corrected, plain)
    return step, m_t, v_t, (v_hat_t if v_hat is not None else None)


def momentum_step(g, velocity, learning_rate, momentum, nesterov=False):
    """Heavy-ball or Nesterov momentum as Lasagne applies it.

    ``velocity_t = momentum * velocity - lr * g``; the new parameter is
    ``param + velocity_t`` (heavy ball) or ``param + momentum * velocity_t - lr * g``
    (Nesterov, Sutskever et al. 2013 form). Returns ``(delta, velocity_t)`` with
    ``param_new = param + delta``.
    """
    velocity_t = momentum * velocity - learning_rate * g
    if nesterov:
        return momentum * velocity_t - learning_rate * g, velocity_t
    return velocity_t, velocity_t


def decoupled_weight_decay(param, learning_rate, weight_decay):
    """The AdamW decay term ``lr * weight_decay * param`` (Loshchilov & Hutter, 2019),
    subtracted from the parameter beside the Adam step, not added to the gradient."""
    return learning_rate * weight_decay * param
