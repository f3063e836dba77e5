"""wdjax: weight decay and L1/L2 regularization for image recognition, in JAX.

Public API (explicit re-exports; the modules are the implementation):

* regularizers as optax transforms: :func:`soft_threshold`, :func:`prox_l1`,
  :func:`prox_elastic_net`, :func:`prox_group_lasso`, :func:`add_l1_subgradient`,
  :func:`adam_prox`, :func:`either`, :func:`hold_zeros`, :func:`scale_by_adam_no_eps` (Adam
  without ε, 0/0 as 0), :func:`cautious_decayed_weights`,
  :func:`corrected_decayed_weights` (the 2025 decay variants); loss-side penalties
  :func:`l1_penalty`, :func:`l2_penalty`, :func:`group_lasso_penalty` and the default mask
  :func:`decay_mask`;
* :func:`make_optimizer`: named strategies (``OPTIMIZERS`` × ``STRATEGIES``) → one transform;
* :func:`make_model` (``MODELS``), :func:`load` (``DATASETS``);
* :func:`sweep` over a :class:`SweepConfig` → :class:`SweepResult` (hooks: ``init_params=``,
  ``record=``); :func:`load_result`; :func:`evaluate` (given parameters, no training); any
  Flax model (Linen module or NNX factory) and any optimizer factory (:class:`Strategy`,
  :class:`Sheared`, :class:`Decay`, :class:`Held`), :func:`mask_from_spec`,
  learning-rate :mod:`schedules`;
  :func:`use_cpu_devices` (on CPU, run members as several concurrent programs);
* :func:`build`: the one builder from a :class:`SweepConfig` to its objects (:class:`Built`).
"""

from wdjax import schedules
from wdjax.data import DATASETS, Dataset, DatasetError, kfold_indices, load
from wdjax.decay import cautious_decayed_weights, corrected_decayed_weights
from wdjax.engine.devices import use_cpu_devices
from wdjax.engine.engine import Data, Engine, Hyper, MemberState, Schedule
from wdjax.engine.metrics import accuracy, cross_entropy, unit_angular_update, weight_stats
from wdjax.engine.models import MODELS, make_model, param_count
from wdjax.errors import ConfigError
from wdjax.factories import Decay, Held, Sheared, Strategy
from wdjax.masks import decay_mask, mask_from_spec
from wdjax.optim import OPTIMIZERS, STRATEGIES, make_optimizer
from wdjax.penalties import group_lasso_penalty, l1_penalty, l2_penalty
from wdjax.prox import adam_prox, prox_elastic_net, prox_group_lasso, prox_l1, soft_threshold
from wdjax.run.build import Built, build
from wdjax.run.config import SweepConfig, parse_grid
from wdjax.run.evaluation import evaluate
from wdjax.run.runner import SweepResult, load_result, sweep
from wdjax.transforms import add_l1_subgradient, either, hold_zeros, scale_by_adam_no_eps

__version__ = "0.1.0"

__all__ = [
    "DATASETS",
    "Data",
    "Decay",
    "Engine",
    "Held",
    "Hyper",
    "MemberState",
    "MODELS",
    "OPTIMIZERS",
    "STRATEGIES",
    "Schedule",
    "Sheared",
    "Strategy",
    "Built",
    "ConfigError",
    "Dataset",
    "DatasetError",
    "SweepConfig",
    "SweepResult",
    "accuracy",
    "adam_prox",
    "build",
    "add_l1_subgradient",
    "cautious_decayed_weights",
    "corrected_decayed_weights",
    "cross_entropy",
    "decay_mask",
    "either",
    "evaluate",
    "group_lasso_penalty",
    "hold_zeros",
    "scale_by_adam_no_eps",
    "kfold_indices",
    "l1_penalty",
    "l2_penalty",
    "load",
    "load_result",
    "make_model",
    "make_optimizer",
    "mask_from_spec",
    "param_count",
    "parse_grid",
    "prox_elastic_net",
    "prox_group_lasso",
    "prox_l1",
    "schedules",
    "soft_threshold",
    "sweep",
    "use_cpu_devices",
    "unit_angular_update",
    "weight_stats",
]
