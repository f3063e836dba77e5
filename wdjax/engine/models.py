"""Flax Linen models: the tutorial MLP, a small CNN and a CIFAR ResNet, by name.

Every model is called as ``model.apply(variables, x_NHWC, train)`` and returns logits (the softmax
lives in the loss). Variables are plain pytrees, so ``jit``/``vmap``/``lax.scan`` apply directly:

* ``"params"``: weights. Matrices and filters are leaves named ``"kernel"`` (decayed by the path
  masks); ``"bias"`` and BatchNorm ``"scale"``/``"bias"`` are not. Dense kernels are ``(in, out)``,
  conv kernels ``(kh, kw, cin, cout)``: the LAST axis is the output unit (a group-lasso group).
* ``"batch_stats"`` (only with ``batchnorm=True``): BatchNorm running ``mean``/``var``, updated
  with momentum 0.9 (``new = 0.9 * old + 0.1 * batch``) and epsilon 1e-5 (PyTorch's defaults;
  each model's ``bn_epsilon`` sets ε: 0 makes the kernels BatchNorm follows exactly
  scale-invariant), using batch statistics when ``train`` and the running averages otherwise. Pass
  ``mutable=["batch_stats"]`` when ``train`` is true.
* Dropout draws from the rng stream named ``"dropout"`` and is active only when ``train``.

A Dense/Conv layer directly followed by BatchNorm has no bias: that bias's true gradient is exactly
zero, and Adam would turn the rounding noise in it into learning-rate-sized steps.

Convolutions are written as ``Conv3x3`` (nine shifted slices, one matmul) and pooling as
``max_pool_2x2`` (reshape + max): the same maths as ``flax.linen.Conv`` / ``nn.max_pool`` with the
same parameter layout, but fast on XLA:CPU, where the library conv's kernel gradient is ~40x slower
inside ``lax.scan`` and grouped convs under ``vmap`` run on one thread.
"""

from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from wdjax.errors import ConfigError, ConfigTypeError

MODELS = ("mlp", "cnn", "resnet")

BN_MOMENTUM = 0.9
BN_EPSILON = 1e-5

_Initializer = Callable[..., jax.Array]


def _batch_norm(train: bool, name: str, epsilon: float = BN_EPSILON) -> nn.BatchNorm:
    return nn.BatchNorm(
        use_running_average=not train, momentum=BN_MOMENTUM, epsilon=epsilon, name=name
    )


def im2col_3x3(x_NHWC: jax.Array, stride: int = 1) -> jax.Array:
    """The nine shifted views of a 3x3 conv window, stacked along channels.

    Pads one pixel on each side of H and W (PyTorch's ``padding=1``; for stride 1 this is exactly
    Flax's ``"SAME"``), then takes, for each kernel offset ``(i, j)`` in row-major order, the view
    ``x_pad[:, i::stride, j::stride, :]`` of the output's size. So

    .. math:: \\mathrm{patches}[n, h, w, (3i + j) C + c] = x_{\\mathrm{pad}}[n, s h + i, s w + j, c]

    and ``patches @ kernel.reshape(9 C, C_out)`` is the convolution with a ``(3, 3, C, C_out)``
    kernel.

    Args:
      x_NHWC: images, shape ``(N, H, W, C)``.
      stride: 1 or 2 (any positive int works).

    Returns:
      Patches of shape ``(N, H_out, W_out, 9 C)`` with ``H_out = ceil(H / stride)``.
    """
    n, h, w, c = x_NHWC.shape
    h_out, w_out = -(-h // stride), -(-w // stride)
    x_pad = jnp.pad(x_NHWC, ((0, 0), (1, 1), (1, 1), (0, 0)))
    views = [
        lax.slice(
            x_pad,
            (0, i, j, 0),
            (n, i + (h_out - 1) * stride + 1, j + (w_out - 1) * stride + 1, c),
            (1, stride, stride, 1),
        )
        for i in range(3)
        for j in range(3)
    ]
    return jnp.concatenate(views, axis=-1)


def max_pool_2x2(x_NHWC: jax.Array) -> jax.Array:
    """2x2 max-pool with stride 2 as reshape + max; equals ``nn.max_pool(x, (2, 2), (2, 2))``.

    Odd sizes follow ``nn.max_pool``'s default ``"VALID"`` padding: the last row/column is dropped
    (``H_out = floor(H / 2)``). Gradient caveat: on exact ties inside a window this splits the
    gradient equally among the tied inputs, where ``nn.max_pool`` gives it all to one; after a
    ReLU the only likely ties are zeros, whose ReLU gradient is zero, so the network's gradient is
    the same.

    Args:
      x_NHWC: shape ``(N, H, W, C)``.

    Returns:
      Shape ``(N, H // 2, W // 2, C)``.
    """
    n, h, w, c = x_NHWC.shape
    x_NHWC = x_NHWC[:, : h - h % 2, : w - w % 2, :]
    return jnp.max(x_NHWC.reshape(n, h // 2, 2, w // 2, 2, c), axis=(2, 4))


class Conv3x3(nn.Module):
    """3x3 convolution, padding 1, as one matmul over ``im2col_3x3`` patches.

    Same parameters as ``nn.Conv(features, (3, 3), strides, padding=((1, 1), (1, 1)))``: ``kernel``
    ``(3, 3, C_in, features)`` and optional ``bias`` ``(features,)``. For stride 1 this is
    ``nn.Conv(..., padding="SAME")``; for stride 2 it pads symmetrically as PyTorch and He et al.
    do (Flax's ``"SAME"`` would pad ``(0, 1)`` on even sizes).
    """

    features: int
    strides: int = 1
    use_bias: bool = True
    kernel_init: _Initializer = nn.initializers.lecun_normal()
    bias_init: _Initializer = nn.initializers.zeros_init()

    @nn.compact
    def __call__(self, x_NHWC: jax.Array) -> jax.Array:
        c_in = x_NHWC.shape[-1]
        kernel = self.param("kernel", self.kernel_init, (3, 3, c_in, self.features))
        patches = im2col_3x3(x_NHWC, self.strides)
        n, h, w, k = patches.shape
        y = (patches.reshape(n * h * w, k) @ kernel.reshape(k, self.features)).reshape(
            n, h, w, self.features
        )
        if self.use_bias:
            y = y + self.param("bias", self.bias_init, (self.features,)).reshape(1, 1, 1, -1)
        return y


class MLP(nn.Module):
    """Flatten -> [Dense(h) -> (BatchNorm) -> ReLU -> (Dropout)] per hidden size -> Dense(classes).

    The tutorial net is ``hidden=(64, 64)`` on 28x28x1 inputs: 784 -> 64 -> 64 -> 10. Dropout (if
    ``dropout > 0``) follows every hidden ReLU.
    """

    num_classes: int
    hidden: Sequence[int] = (64, 64)
    dropout: float = 0.0
    batchnorm: bool = False
    bn_epsilon: float = BN_EPSILON  # 0: BN-preceded kernels exactly scale-invariant (train mode)

    @nn.compact
    def __call__(self, x_NHWC: jax.Array, train: bool) -> jax.Array:
        x = x_NHWC.reshape(x_NHWC.shape[0], -1)
        for i, width in enumerate(self.hidden):
            x = nn.Dense(width, use_bias=not self.batchnorm, name=f"dense_{i}")(x)
            if self.batchnorm:
                x = _batch_norm(train, f"bn_{i}", self.bn_epsilon)(x)
            x = nn.relu(x)
            if self.dropout > 0:
                x = nn.Dropout(self.dropout, deterministic=not train)(x)
        return nn.Dense(self.num_classes, name="head")(x)


class CNN(nn.Module):
    """Conv 3x3 -> ReLU -> pool 2x2, twice (32, 64 filters) -> Dense(128) -> ReLU -> Dense(classes).

    Padding is ``SAME``, so 28 -> 14 -> 7, 32 -> 16 -> 8, 8 -> 4 -> 2. With ``batchnorm`` a
    BatchNorm follows each conv and the hidden Dense (which then have no bias), before the ReLU.
    Dropout (if ``dropout > 0``) follows the hidden Dense's ReLU only.
    """

    num_classes: int
    features: Sequence[int] = (32, 64)
    dense: int = 128
    dropout: float = 0.0
    batchnorm: bool = False
    bn_epsilon: float = BN_EPSILON

    @nn.compact
    def __call__(self, x_NHWC: jax.Array, train: bool) -> jax.Array:
        x = x_NHWC
        for i, feats in enumerate(self.features):
            x = Conv3x3(feats, use_bias=not self.batchnorm, name=f"conv_{i}")(x)
            if self.batchnorm:
                x = _batch_norm(train, f"conv_bn_{i}", self.bn_epsilon)(x)
            x = max_pool_2x2(nn.relu(x))
        x = x.reshape(x.shape[0], -1)
        x = nn.Dense(self.dense, use_bias=not self.batchnorm, name="dense_0")(x)
        if self.batchnorm:
            x = _batch_norm(train, "bn_0", self.bn_epsilon)(x)
        x = nn.relu(x)
        if self.dropout > 0:
            x = nn.Dropout(self.dropout, deterministic=not train)(x)
        return nn.Dense(self.num_classes, name="head")(x)


class _BasicBlock(nn.Module):
    """conv-[BN]-ReLU-conv-[BN] + shortcut, then ReLU. Option-A shortcut (no parameters)."""

    features: int
    strides: int
    batchnorm: bool
    bn_epsilon: float = BN_EPSILON

    @nn.compact
    def __call__(self, x_NHWC: jax.Array, train: bool) -> jax.Array:
        conv = dict(use_bias=not self.batchnorm, kernel_init=nn.initializers.he_normal())
        y = Conv3x3(self.features, self.strides, name="conv_0", **conv)(x_NHWC)
        if self.batchnorm:
            y = _batch_norm(train, "bn_0", self.bn_epsilon)(y)
        y = Conv3x3(self.features, name="conv_1", **conv)(nn.relu(y))
        if self.batchnorm:
            y = _batch_norm(train, "bn_1", self.bn_epsilon)(y)
        shortcut = x_NHWC[:, :: self.strides, :: self.strides, :]
        extra = self.features - shortcut.shape[-1]
        shortcut = jnp.pad(shortcut, ((0, 0), (0, 0), (0, 0), (0, extra)))
        return nn.relu(y + shortcut)


class ResNet(nn.Module):
    """CIFAR ResNet (He et al. 2016, Sec. 4.2): ``depth = 6 n + 2``, ResNet-20 at ``n = 3``.

    Stem conv 3x3 (16) -> [BN] -> ReLU; three stages of ``n`` basic blocks with 16, 32, 64 filters
    (the first block of stages 2 and 3 has stride 2); global average pool -> [Dropout] -> Dense.
    Shortcuts are option A: the strided identity ``x[:, ::2, ::2]`` zero-padded in channels, no
    parameters (the paper's CIFAR choice). With ``batchnorm`` every conv is followed by BatchNorm
    and has no bias; without, there is no normalisation and every conv has a bias. Conv kernels use
    He-normal init. Dropout (if ``dropout > 0``) is applied to the pooled features, before the head.

    References:
      He, Zhang, Ren, Sun. Deep Residual Learning for Image Recognition. CVPR 2016.
    """

    num_classes: int
    depth: int = 20
    widths: Sequence[int] = (16, 32, 64)
    dropout: float = 0.0
    batchnorm: bool = False
    bn_epsilon: float = BN_EPSILON

    @nn.compact
    def __call__(self, x_NHWC: jax.Array, train: bool) -> jax.Array:
        n_blocks = (self.depth - 2) // 6
        x = Conv3x3(
            self.widths[0],
            use_bias=not self.batchnorm,
            kernel_init=nn.initializers.he_normal(),
            name="stem",
        )(x_NHWC)
        if self.batchnorm:
            x = _batch_norm(train, "stem_bn", self.bn_epsilon)(x)
        x = nn.relu(x)
        for s, width in enumerate(self.widths):
            for b in range(n_blocks):
                strides = 2 if (s > 0 and b == 0) else 1
                block = _BasicBlock(width, strides, self.batchnorm, self.bn_epsilon,
                                    name=f"stage{s}_block{b}")  # fmt: skip
                x = block(x, train)
        x = jnp.mean(x, axis=(1, 2))
        if self.dropout > 0:
            x = nn.Dropout(self.dropout, deterministic=not train)(x)
        return nn.Dense(self.num_classes, name="head")(x)


def _positive_ints(value: Any, what: str, allow_empty: bool) -> tuple[int, ...]:
    try:
        values = tuple(value)
    except TypeError:
        raise ConfigTypeError(
            f"{what} must be a sequence of positive ints, got {value!r}", what
        ) from None
    ok = all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in values)
    if not ok or (not values and not allow_empty):
        raise ConfigError(f"{what} must be a sequence of positive ints, got {value!r}", what)
    return values


def _check_kw(name: str, kw: dict[str, Any], allowed: tuple[str, ...]) -> None:
    for key in kw:
        if key not in allowed:
            raise ConfigError(
                f"unknown option {key!r} for model {name!r}; "
                f"valid options: {', '.join(allowed) or '(none)'}",
                key,
            )


def make_model(
    name: str,
    num_classes: int,
    *,
    hidden: Sequence[int] = (64, 64),
    dropout: float = 0.0,
    batchnorm: bool = False,
    **kw: Any,
) -> nn.Module:
    """Builds a model by name.

    Args:
      name: one of ``MODELS``: ``"mlp"``, ``"cnn"``, ``"resnet"``.
      num_classes: number of logits.
      hidden: MLP hidden widths (``()`` gives softmax regression); ignored by cnn and resnet.
      dropout: drop rate in ``[0, 1)``; where it applies is documented on each model class.
      batchnorm: add BatchNorm (momentum 0.9, eps 1e-5) after each hidden Dense/Conv.
      **kw: model-specific options: cnn ``features=(32, 64)``, ``dense=128``; resnet
        ``depth=20`` (``6 n + 2``, at least 8), ``widths=(16, 32, 64)``.

    Returns:
      An unbound ``flax.linen.Module``; call ``init(rngs, x_NHWC, train=False)``.

    Raises:
      ValueError / TypeError: on an unknown name or option, or an invalid value.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> model = make_model("mlp", 10)
      >>> params = model.init(jax.random.key(0), jnp.zeros((1, 28, 28, 1)), False)["params"]
      >>> param_count(params)
      55050
    """
    if name not in MODELS:
        raise ConfigError(f"unknown model {name!r}; choose one of: {', '.join(MODELS)}", "name")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ConfigError(f"num_classes must be a positive int, got {num_classes!r}", "num_classes")
    hidden = _positive_ints(hidden, "hidden", allow_empty=True)
    if isinstance(dropout, bool) or not isinstance(dropout, int | float) or not 0 <= dropout < 1:
        raise ConfigError(f"dropout must be a float in [0, 1), got {dropout!r}", "dropout")
    if not isinstance(batchnorm, bool):
        raise ConfigTypeError(f"batchnorm must be a bool, got {batchnorm!r}", "batchnorm")
    common = dict(num_classes=num_classes, dropout=float(dropout), batchnorm=batchnorm)
    if name == "mlp":
        _check_kw(name, kw, ())
        return MLP(hidden=hidden, **common)
    if name == "cnn":
        _check_kw(name, kw, ("features", "dense"))
        features = _positive_ints(kw.get("features", (32, 64)), "features", allow_empty=False)
        (dense,) = _positive_ints((kw.get("dense", 128),), "dense", allow_empty=False)
        return CNN(features=features, dense=dense, **common)
    _check_kw(name, kw, ("depth", "widths"))
    depth = kw.get("depth", 20)
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 8 or (depth - 2) % 6:
        raise ValueError(f"depth must be 6 n + 2 with n >= 1 (8, 14, 20, 32, ...), got {depth!r}")
    widths = _positive_ints(kw.get("widths", (16, 32, 64)), "widths", allow_empty=False)
    if any(b < a for a, b in zip(widths, widths[1:], strict=False)):
        raise ValueError(f"widths must be non-decreasing (option-A shortcuts pad), got {widths!r}")
    return ResNet(depth=depth, widths=widths, **common)


def param_count(params: Any) -> int:
    """Total number of scalars in a pytree (all members' if it is stacked along a member axis)."""
    return sum(int(x.size) for x in jax.tree.leaves(params))
