"""Lasagne-style update rules for Theano 1.0.5 and PyTensor.

Each function takes a loss expression or a list of gradients plus a list of shared
variables and returns an ``OrderedDict`` mapping shared variables to their update
expressions, ready for ``function(..., updates=updates)`` -- the interface of
``lasagne.updates``. The tensor library is taken from the parameters, so one
install can serve Theano and PyTensor code.

Examples
--------
>>> import numpy as np, theano, theano.tensor as T          # doctest: +SKIP
>>> from amsgrad import amsgrad
>>> x, y = T.matrix('x'), T.ivector('y')
>>> W = theano.shared(np.zeros((784, 10), dtype='float32'))
>>> p = T.nnet.softmax(T.dot(x, W))
>>> loss = T.nnet.categorical_crossentropy(p, y).mean()
>>> train = theano.function([x, y], loss, updates=amsgrad(loss, [W]))
"""
from collections import OrderedDict

import numpy as np

from . import rules


def _library(params):
    """'theano' or 'pytensor', from the class of the (shared) parameters."""
    libraries = set()
    for p in params:
        root = type(p).__module__.split(".")[0]
        if root not in ("theano", "pytensor") or not _is_shared(p, root):
            raise ValueError(
                "params must contain shared variables only (Theano or PyTensor); got "
                f"{p!r} of type {type(p).__name__}. If it contains arbitrary parameter "
                "expressions, collect the shared variables they depend on first.")
        libraries.add(root)
    if len(libraries) != 1:
        raise ValueError(f"params mix tensor libraries: {sorted(libraries)}")
    return libraries.pop()


def _is_shared(p, library):
    if library == "theano":
        from theano.compile import SharedVariable
    else:
        from pytensor.compile import SharedVariable
    return isinstance(p, SharedVariable)


def _grad(library):
    if library == "theano":
        import theano
        return theano.grad
    import pytensor
    return pytensor.grad


def _cast(library, expr, dtype):
    if library == "theano":
        import theano.tensor as T
        return T.cast(expr, dtype)
    import pytensor.tensor as pt
    return pt.cast(expr, dtype)


def _zeros_like(library, param, suffix, fill=0.0):
    """A shared array of ``fill`` (zeros) shaped like ``param`` (same dtype and broadcast
    pattern), named ``<param.name>.<suffix>``."""
    value = param.get_value(borrow=True)
    zeros = np.full(value.shape, fill, dtype=value.dtype)
    name = f"{param.name}.{suffix}" if param.name else suffix
    if library == "theano":
        import theano
        return theano.shared(zeros, broadcastable=param.broadcastable, name=name)
    import pytensor
    return pytensor.shared(zeros, shape=param.type.shape, name=name)


def _step_counter(library):
    """The shared step counter ``t``, one per update function, in floatX."""
    if library == "theano":
        import theano
        return theano.shared(np.asarray(0.0, dtype=theano.config.floatX), name="t")
    import pytensor
    return pytensor.shared(np.asarray(0.0, dtype=pytensor.config.floatX), name="t")


def get_or_compute_grads(loss_or_grads, params):
    """Gradients of a scalar loss, or the given list checked against ``params``.

    Raises
    ------
    ValueError
        If a parameter is not a shared variable, or if a list of gradients does not
        have one entry per parameter.
    """
    library = _library(params)
    if isinstance(loss_or_grads, (list, tuple)):
        if len(loss_or_grads) != len(params):
            raise ValueError(f"Got {len(loss_or_grads)} gradient expressions for "
                             f"{len(params)} parameters")
        return list(loss_or_grads)
    return _grad(library)(loss_or_grads, params)


def sgd(loss_or_grads, params, learning_rate):
    """Stochastic gradient descent: ``param := param - learning_rate * grad``."""
    library = _library(params)
    grads = get_or_compute_grads(loss_or_grads, params)
    updates = OrderedDict()
    for param, g in zip(params, grads):
        updates[param] = _cast(library, param - learning_rate * g, param.dtype)
    return updates


def _momentum(loss_or_grads, params, learning_rate, momentum, nesterov):
    library = _library(params)
    grads = get_or_compute_grads(loss_or_grads, params)
    updates = OrderedDict()
    for param, g in zip(params, grads):
        velocity = _zeros_like(library, param, "velocity")
        delta, velocity_t = rules.momentum_step(g, velocity, learning_rate, momentum, nesterov)
        updates[velocity] = _cast(library, velocity_t, param.dtype)
        updates[param] = _cast(library, param + delta, param.dtype)
    return updates


def momentum(loss_or_grads, params, learning_rate, momentum=0.9):
    """SGD with heavy-ball momentum, as ``lasagne.updates.momentum``.

    ``velocity := momentum * velocity - learning_rate * grad``;
    ``param := param + velocity``.

    References
    ----------
    .. [1] Polyak, B. T. (1964). Some methods of speeding up the convergence of
           iteration methods. USSR Computational Mathematics and Mathematical Physics.
    """
    return _momentum(loss_or_grads, params, learning_rate, momentum, nesterov=False)


def nesterov_momentum(loss_or_grads, params, learning_rate, momentum=0.9):
    """SGD with Nesterov momentum, as ``lasagne.updates.nesterov_momentum``.

    ``velocity := momentum * velocity - learning_rate * grad``;
    ``param := param + momentum * velocity - learning_rate * grad``.

    References
    ----------
    .. [1] Sutskever, I., Martens, J., Dahl, G., & Hinton, G. (2013). On the importance
           of initialization and momentum in deep learning. ICML 2013.
    """
    return _momentum(loss_or_grads, params, learning_rate, momentum, nesterov=True)


def elementwise_updates(loss_or_grads, params, step_fn, slots, hyper, fill=0.0,
                        weight_decay=0.0):
    """Updates of a rule that steps each parameter elementwise with its own state.

    Parameters
    ----------
    loss_or_grads, params
        As for every rule here.
    step_fn : callable
        ``step_fn(ns, g, *state, t, **hyper) -> (step, *new_state)``, from
        :mod:`amsgrad.rules` or :mod:`amsgrad.fixes`; the new parameter is
        ``param - step``.
    slots : tuple of str or None
        The state the step function takes, in order (:data:`amsgrad.slots.SLOTS`); each
        becomes a shared variable ``<param.name>.<slot>`` starting at ``fill``. ``None``
        passes ``None`` (state the rule leaves out, e.g. AMSBound's maximum in AdaBound).
    hyper : dict
        Keyword arguments of ``step_fn``: hyperparameters and switches.
    fill : float
        The value the state starts from.
    weight_decay : float
        Decoupled decay (AdamW): ``learning_rate * weight_decay * param`` is subtracted
        beside the step.

    Returns
    -------
    OrderedDict
        Updates for the parameters, their state and the step counter ``t``.
    """
    library = _library(params)
    grads = get_or_compute_grads(loss_or_grads, params)
    ns = rules.namespace(library)
    t_prev = _step_counter(library)
    t = t_prev + 1
    updates = OrderedDict()
    for param, g in zip(params, grads):
        state = [_zeros_like(library, param, slot, fill) if slot else None for slot in slots]
        step, *new_state = step_fn(ns, g, *state, t, **hyper)
        new_param = param - step
        if weight_decay:
            new_param = new_param - rules.decoupled_weight_decay(
                param, hyper["learning_rate"], weight_decay)
        for variable, value in zip(state, new_state):
            if variable is not None:
                updates[variable] = _cast(library, value, param.dtype)
        updates[param] = _cast(library, new_param, param.dtype)
    updates[t_prev] = _cast(library, t, t_prev.dtype)
    return updates


def adam_family(loss_or_grads, params, learning_rate=0.001, beta1=0.9, beta2=0.999,
                epsilon=1e-8, bias_correction=True, amsgrad=False, variant="lasagne",
                weight_decay=0.0):
    """Adam or AMSGrad in any of the documented variants, optionally with AdamW decay.

    Parameters
    ----------
    loss_or_grads : symbolic expression or list of expressions
        A scalar loss, or one gradient per parameter.
    params : list of shared variables
    learning_rate : float or symbolic scalar
    beta1, beta2, epsilon : float
    bias_correction : bool
        Scale the step by ``sqrt(1 - beta2**t) / (1 - beta1**t)``.
    amsgrad : bool
        Keep the running maximum of the second moment (Reddi et al., 2018).
    variant : {'lasagne', 'pytorch', 'optax'}
        See :func:`amsgrad.rules.adam_step` and ``docs/variants.md``.
    weight_decay : float
        Decoupled decay ``param -= learning_rate * weight_decay * param`` (AdamW).

    Returns
    -------
    OrderedDict
        Updates for the parameters, their moment estimates and the step counter.
    """
    rules.check_variant(variant)
    hyper = dict(learning_rate=learning_rate, beta1=beta1, beta2=beta2, epsilon=epsilon,
                 bias_correction=bias_correction, amsgrad=amsgrad, variant=variant)
    return elementwise_updates(loss_or_grads, params, rules.adam_step,
                               ("m", "v", "v_hat" if amsgrad else None), hyper,
                               weight_decay=weight_decay)


def adam(loss_or_grads, params, learning_rate=0.001, beta1=0.9, beta2=0.999,
         epsilon=1e-8, bias_correction=True):
    """Adam updates (Kingma & Ba, 2015), with a switch for the bias correction.

    ``m := beta1*m + (1-beta1)*g``; ``v := beta2*v + (1-beta2)*g**2``;
    ``param := param - a_t * m / (sqrt(v) + epsilon)`` with
    ``a_t = learning_rate * sqrt(1-beta2**t) / (1-beta1**t)``, or ``learning_rate``
    when ``bias_correction`` is off. One step counter ``t`` per update function.

    Parameters
    ----------
    loss_or_grads : symbolic expression or list of expressions
        A scalar loss, or one gradient per parameter.
    params : list of shared variables
    learning_rate : float or symbolic scalar
    beta1, beta2 : float
        Decay rates of the first and second moment estimates.
    epsilon : float
        Added to ``sqrt(v)`` for numerical stability.
    bias_correction : bool

    Returns
    -------
    OrderedDict

    References
    ----------
    .. [1] Kingma, D. P., & Ba, J. (2015). Adam: A Method for Stochastic Optimization.
           ICLR 2015. https://arxiv.org/abs/1412.6980
    """
    return adam_family(loss_or_grads, params, learning_rate, beta1, beta2, epsilon,
                       bias_correction, amsgrad=False)


def amsgrad(loss_or_grads, params, learning_rate=0.001, beta1=0.9, beta2=0.999,
            epsilon=1e-8, bias_correction=True):
    """AMSGrad updates (Reddi et al., 2018), Lasagne style.

    As :func:`adam`, but the step divides by the running maximum of the raw second
    moment, ``v_hat := max(v_hat, v)``, so the effective step size never grows.

    Parameters
    ----------
    loss_or_grads : symbolic expression or list of expressions
        A scalar loss, or one gradient per parameter.
    params : list of shared variables
    learning_rate : float or symbolic scalar
    beta1, beta2 : float
        Decay rates of the first and second moment estimates.
    epsilon : float
        Added to ``sqrt(v_hat)`` for numerical stability (not rescaled).
    bias_correction : bool
        Scale the step by ``sqrt(1 - beta2**t) / (1 - beta1**t)``.

    Returns
    -------
    OrderedDict
        Updates for the parameters, ``m``, ``v``, ``v_hat`` and the step counter.

    References
    ----------
    .. [1] Reddi, S. J., Kale, S., & Kumar, S. (2018). On the Convergence of Adam and
           Beyond. ICLR 2018. https://openreview.net/forum?id=ryQu7f-RZ
    """
    return adam_family(loss_or_grads, params, learning_rate, beta1, beta2, epsilon,
                       bias_correction, amsgrad=True)


def adamw(loss_or_grads, params, learning_rate=0.001, beta1=0.9, beta2=0.999,
          epsilon=1e-8, weight_decay=0.01, bias_correction=True, amsgrad=False):
    """Adam (or AMSGrad) with decoupled weight decay.

    ``param := param - step - learning_rate * weight_decay * param``, the step as in
    :func:`adam`. The decay uses the (scheduled) learning rate, as PyTorch and optax do.

    References
    ----------
    .. [1] Loshchilov, I., & Hutter, F. (2019). Decoupled Weight Decay Regularization.
           ICLR 2019. https://arxiv.org/abs/1711.05101
    """
    return adam_family(loss_or_grads, params, learning_rate, beta1, beta2, epsilon,
                       bias_correction, amsgrad=amsgrad, weight_decay=weight_decay)
