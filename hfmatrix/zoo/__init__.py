"""The model zoo: specs as data (models.toml), offline materialization, deterministic inputs."""
from .inputs import batch, example, generation_inputs, lengths, max_positions
from . import materialize  # a callable module: materialize(spec, cache_dir=None) -> Path
from .materialize import verify
from .spec import ARCH_CLASSES, TASK_AUTO_CLASS, ZOO_FILE, ModelSpec, load_specs
from .user import spec_from_user

__all__ = [
    "ARCH_CLASSES", "TASK_AUTO_CLASS", "ZOO_FILE", "ModelSpec", "load_specs", "materialize", "verify",
    "spec_from_user", "example", "batch", "lengths", "generation_inputs", "max_positions",
]
