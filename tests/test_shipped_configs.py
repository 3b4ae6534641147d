"""Every planning-task config the README names loads into its dataclass (a typo in a
key fails here, not an hour into a benchmark)."""

from pathlib import Path

import pytest

from agents.compare import load_config as load_compare
from agents.config import from_dict, load_yaml
from agents.training.bootstrap import BootstrapConfig
from agents.training.self_train import load_config as load_self_train

FOLDER = Path(__file__).resolve().parents[1] / "configs" / "countdown"


def load(path: Path):
    if path.name.startswith("bootstrap"):
        return from_dict(BootstrapConfig, load_yaml(str(path)), str(path))
    if "self_train" in path.name:
        return load_self_train(path)
    return load_compare(path)


@pytest.mark.parametrize("path", sorted(FOLDER.glob("*.yaml")), ids=lambda path: path.name)
def test_countdown_configs_load(path):
    config = load(path)
    models = getattr(config, "models", None)
    if models is None:
        assert config.source == "countdown"
    elif isinstance(models.bootstrap, BootstrapConfig):  # self-training reads its bootstrap config at load
        assert models.bootstrap.source == "countdown"
    else:  # a comparison names the bootstrap config of the models it runs on
        assert (FOLDER.parents[1] / models.bootstrap).is_file()
