"""What is trained: model + data + loss + evaluation + partitioning across workers.

>>> import workloads
>>> w = workloads.get("mlp_digits", batch_size=32, partition="dirichlet", alpha=0.5)
>>> x, y = next(w.batches(rank=0, n_workers=4, seed=0))
>>> tuple(x.shape), tuple(y.shape)
((32, 64), (32,))
"""

from workloads.base import Workload
from workloads.custom import custom
from workloads.digits import cnn_digits, load_digits, mlp_digits
from workloads.logistic_regression import logistic_regression
from workloads.partition import PARTITIONS
from workloads.quadratic import Quadratic, quadratic
from workloads.registry import get, names, register
from workloads.tiny_transformer import CharLM, tiny_transformer

__all__ = [
    "PARTITIONS",
    "CharLM",
    "Quadratic",
    "Workload",
    "cnn_digits",
    "custom",
    "get",
    "load_digits",
    "logistic_regression",
    "mlp_digits",
    "names",
    "quadratic",
    "register",
    "tiny_transformer",
]
