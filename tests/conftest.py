"""Shared test setup: gates for the Theano/PyTensor tests and the three optimizer faces.

Tests marked ``theano`` or ``pytensor`` are skipped where that library is not
installed, unless ``AMSGRAD_REQUIRE_THEANO=1`` / ``AMSGRAD_REQUIRE_PYTENSOR=1`` is set
(as CI does in the matching environment): then a missing library fails them. A library
that is installed but fails to import is an error either way, never a skip.
"""
import importlib
import importlib.util
import os
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]

# Theano reads its flags once, at import; without an empty blas.ldflags it does not
# import on this stack. The compile cache stays inside the (git-ignored) .cache/.
os.environ.setdefault(
    "THEANO_FLAGS",
    f"blas.ldflags=,floatX=float32,base_compiledir={REPO / '.cache' / 'theano'}")

#: Real MNIST and CIFAR-10 (``../shared/data`` beside the repository, or $AMSGRAD_REAL_DATA).
REAL_DATA = Path(os.environ.get("AMSGRAD_REAL_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def cifar_root(tmp_path_factory):
    """A real CIFAR-10 in the official python format, built once per session (~15 s)."""
    import subprocess
    import sys
    root = tmp_path_factory.mktemp("cifar")
    subprocess.run([sys.executable, str(REAL_DATA / "make_cifar10_batches.py"), str(root)],
                   check=True, stdout=subprocess.DEVNULL)
    return root


REQUIRE_VARIABLE = {"theano": "AMSGRAD_REQUIRE_THEANO", "pytensor": "AMSGRAD_REQUIRE_PYTENSOR"}


def require(library):
    """Import ``library`` for a test, or skip it (see the module docstring)."""
    variable = REQUIRE_VARIABLE[library]
    if importlib.util.find_spec(library) is None:
        if os.environ.get(variable) == "1":
            pytest.fail(f"{library} is not installed, but {variable}=1 requires it",
                        pytrace=False)
        pytest.skip(f"{library} is not installed (set {variable}=1 to require it)")
    return importlib.import_module(library)  # a broken install raises: an error, not a skip


def pytest_configure(config):
    # Theano 1.0.5 uses numpy APIs that numpy 1.23 deprecates (np.complex, distutils).
    config.addinivalue_line("filterwarnings", "ignore::DeprecationWarning:theano.*")


def pytest_runtest_setup(item):
    for library in REQUIRE_VARIABLE:
        if item.get_closest_marker(library) is not None:
            require(library)


class LasagneFace:
    """Theano or PyTensor behind one interface; graphs are built with floatX float32."""

    def __init__(self, name):
        self.name = name
        self.lib = importlib.import_module(name)
        self.T = importlib.import_module(name + ".tensor")
        change_flags = getattr(self.lib, "change_flags", None) or self.lib.config.change_flags
        self.float32 = lambda: change_flags(floatX="float32")

    def shared(self, value, name=None):
        return self.lib.shared(np.asarray(value, dtype="float32"), name=name)

    def tensor(self, ndim, name=None):
        return self.T.TensorType("float32", (False,) * ndim)(name) if self.name == "theano" \
            else self.T.tensor(dtype="float32", shape=(None,) * ndim, name=name)

    def run(self, rule, params0, grads, **hyper):
        """Step ``rule`` ('adam_family', 'sgd', 'momentum', 'nesterov_momentum', 'adamw')
        through ``grads[step][i]``; return the value of every updated shared variable
        after each step, by name (``p0``, ``p0.m``, ``p0.v``, ``p0.v_hat``, ``t``, ...)."""
        import amsgrad
        with self.float32():
            params = [self.shared(p, name=f"p{i}") for i, p in enumerate(params0)]
            inputs = [self.tensor(np.ndim(p), name=f"g{i}") for i, p in enumerate(params0)]
            updates = getattr(amsgrad, rule)(inputs, params, **hyper)
            step = self.lib.function(inputs, [], updates=updates)
        history = []
        for g in grads:
            step(*[np.asarray(gi, dtype="float32") for gi in g])
            history.append({v.name: v.get_value() for v in updates})
        return history


class OptaxFace:
    """The JAX face, reporting its state under the Lasagne face's names."""

    name = "jax"

    def run(self, rule, params0, grads, **hyper):
        import jax
        import jax.numpy as jnp
        import optax
        from amsgrad import optax as face
        if rule == "nesterov_momentum":
            tx = face.momentum(nesterov=True, **hyper)
        else:
            tx = getattr(face, rule)(**hyper)
        params = [jnp.asarray(p, dtype=jnp.float32) for p in params0]
        state = tx.init(params)
        update = jax.jit(tx.update)
        history = []
        for g in grads:
            g = [jnp.asarray(gi, dtype=jnp.float32) for gi in g]
            updates, state = update(g, state, params)
            params = optax.apply_updates(params, updates)
            history.append(self.named(params, state))
        return history

    @staticmethod
    def named(params, state):
        out = {f"p{i}": np.asarray(p) for i, p in enumerate(params)}
        fields = {"mu": "m", "nu": "v", "nu_max": "v_hat", "velocity": "velocity"}
        for field, suffix in fields.items():
            for i, value in enumerate(getattr(state, field, None) or ()):
                out[f"p{i}.{suffix}"] = np.asarray(value)
        if hasattr(state, "count"):
            out["t"] = np.asarray(state.count)
        return out


@pytest.fixture(params=[pytest.param("theano", marks=pytest.mark.theano),
                        pytest.param("pytensor", marks=pytest.mark.pytensor)])
def lasagne_face(request):
    """The Lasagne-style face on Theano, then on PyTensor."""
    return LasagneFace(request.param)


@pytest.fixture(params=[pytest.param("theano", marks=pytest.mark.theano),
                        pytest.param("pytensor", marks=pytest.mark.pytensor),
                        "jax"])
def face(request):
    """Each of the three faces: Theano, PyTensor, JAX/optax."""
    return OptaxFace() if request.param == "jax" else LasagneFace(request.param)


@pytest.fixture
def optax_face():
    return OptaxFace()
