"""What is trained: model + data + loss + evaluation + partitioning across workers.

>>> import workloads
>>> w = workloads.get("mlp_digits", batch_size=32, partition="dirichlet", alpha=0.5)
>>> x, y = next(w.batches(rank=0, n_workers=4, seed=0))
>>> tuple(x.shape), tuple(y.shape)
((32, 64), (32,))
"""

from workloads.acrobot import acrobot
from workloads.base import Workload
from workloads.cartpole import cartpole
from workloads.custom import custom
from workloads.digits import cnn_digits, load_digits, mlp_digits
from workloads.logistic_regression import logistic_regression
from workloads.partition import PARTITIONS
from workloads.presets import PRESETS, gpt2_small, gpt2_xl, llama3_8b, llama3_70b
from workloads.quadratic import Quadratic, quadratic
from workloads.registry import get, names, register
from workloads.reinforcement import RLWorkload
from workloads.resnet import resnet50
from workloads.tiny_transformer import CharLM, tiny_transformer
from workloads.transformer import TokenLM, TransformerConfig, transformer

__all__ = [
    "PARTITIONS",
    "PRESETS",
    "CharLM",
    "Quadratic",
    "RLWorkload",
    "TokenLM",
    "TransformerConfig",
    "Workload",
    "acrobot",
    "cartpole",
    "cnn_digits",
    "custom",
    "get",
    "gpt2_small",
    "gpt2_xl",
    "llama3_70b",
    "llama3_8b",
    "load_digits",
    "logistic_regression",
    "mlp_digits",
    "names",
    "quadratic",
    "register",
    "resnet50",
    "tiny_transformer",
    "transformer",
]
