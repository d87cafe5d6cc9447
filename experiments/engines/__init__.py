"""Engines compile a model spec and train it: ``jax`` (CPU or CUDA) and ``theano`` (CPU).

Every engine has the same interface (see :class:`experiments.engines.base.Engine`),
so the trainer, the results store and the CLI are shared.
"""
ENGINES = ("jax", "theano")


def get_engine(name):
    """The engine class for ``name``; imports its library only when asked for."""
    if name == "jax":
        from .jax_engine import JaxEngine
        return JaxEngine
    if name == "theano":
        from .theano_engine import TheanoEngine
        return TheanoEngine
    raise ValueError(f"unknown engine {name!r}; choose from {', '.join(ENGINES)}")
