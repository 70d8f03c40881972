from mlcls.utils.checkpoint import load_checkpoint, save_checkpoint
from mlcls.utils.dist import get_rank, get_world_size, is_main_process
from mlcls.utils.misc import get_logger, set_random_seed

__all__ = [
    "get_logger",
    "set_random_seed",
    "save_checkpoint",
    "load_checkpoint",
    "get_rank",
    "get_world_size",
    "is_main_process",
]
