"""The tutorial's Keras code as a peer of wdjax's MLP (Keras 3 on its JAX backend, where installed).

Used by experiments/tutorial_mlp.py (moved here from the study when its second program and
generated write-up grew past the study files' 250 lines). :class:`KerasMLP` is the tutorial's
784-64-64-10 network with Keras's initializers (Glorot-uniform kernels, zero biases), for wdjax's
sweeps; :func:`member` trains the tutorial's own ``keras.Sequential`` code on a wdjax Dataset and
reports what the study compares: accuracy and the cross-entropy (without the penalty) on each
split, and the hidden kernels' fractions of exact zeros and of |w| below a threshold.
"""

import os

import flax.linen as nn
import numpy as np

__all__ = ["KerasMLP", "member"]


class KerasMLP(nn.Module):
    """The tutorial's network with Keras's initializers: Glorot-uniform kernels, zero biases."""

    num_classes: int = 10
    hidden: tuple = (64, 64)

    @nn.compact
    def __call__(self, x_NHWC, train: bool = False):
        x, init = x_NHWC.reshape(x_NHWC.shape[0], -1), nn.initializers.glorot_uniform()
        for i, width in enumerate(self.hidden):
            x = nn.relu(nn.Dense(width, kernel_init=init, name=f"dense_{i}")(x))
        return nn.Dense(self.num_classes, kernel_init=init, name="head")(x)


def member(data, lam: float, seed: int, epochs: int, batch_size: int, tau: float) -> dict:
    """The tutorial's Keras code (``l1(lam)`` on both hidden layers; none at 0) trained on
    ``data``: ``train_acc`` (Keras's running accuracy of the last epoch), ``{val,test}_{loss,acc}``
    (cross-entropy without the penalty), ``exact_zero`` and ``near_zero`` (|w| < ``tau``) of the
    two hidden kernels, ``weight_l2`` (‖W‖₂ over every kernel)."""
    os.environ.setdefault("KERAS_BACKEND", "jax")
    import keras

    keras.utils.set_random_seed(seed)
    reg = {"kernel_regularizer": keras.regularizers.l1(lam)} if lam else {}
    layers = [keras.layers.Dense(64, activation="relu", **reg) for _ in range(2)]
    layers = [keras.Input(data.x_train.shape[1:]), keras.layers.Flatten(), *layers]
    model = keras.Sequential([*layers, keras.layers.Dense(data.num_classes, activation="softmax")])
    ce = keras.metrics.CategoricalCrossentropy(name="ce")  # evaluate()'s "loss" adds the penalty
    model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy", ce])
    hot, k = keras.utils.to_categorical, data.num_classes
    hist = model.fit(data.x_train, hot(data.y_train, k), epochs=epochs, batch_size=batch_size,
                     verbose=0)  # fmt: skip
    out = {"train_acc": float(hist.history["accuracy"][-1])}
    for split, x, y in (("test", data.x_test, data.y_test), ("val", data.x_val, data.y_val)):
        r = model.evaluate(x, hot(y, k), batch_size=2048, verbose=0, return_dict=True)
        out[f"{split}_loss"], out[f"{split}_acc"] = float(r["ce"]), float(r["accuracy"])
    kernels = [keras.ops.convert_to_numpy(layer.kernel) for layer in model.layers[1:]]
    hidden = np.abs(np.concatenate([w.ravel() for w in kernels[:2]]))  # the regularized kernels
    out["exact_zero"], out["near_zero"] = float(np.mean(hidden == 0)), float(np.mean(hidden < tau))
    out["weight_l2"] = float(np.sqrt(sum(np.sum(np.square(w, dtype=float)) for w in kernels)))
    return out
