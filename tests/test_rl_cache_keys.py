"""The offline-RL cache keys go through helpers.cache and equal the recipe of earlier builds (cached data still loads)."""
import hashlib
import json

from helpers.rl import generate, sweep


def _old(settings: dict, length: int) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:length]


def test_dataset_key_matches_old_recipe():
    settings = dict(env_id="Pendulum-v1", expert_steps=5000, dataset_steps=2000, seed=0, expert_hidden=256,
                    start_steps=1000, noise=0.1, reference_episodes=10)
    assert generate.dataset_key(**settings) == _old(settings, 10)


def test_sweep_cache_path_matches_old_recipe():
    settings = {"algorithm": "bcq", "env_id": "Pendulum-v1", "steps": 10, "methods": ["snip", "random"],
                "sparsities": [0.0, 0.9], "seeds": [0, 1], "width": 1.0}
    path = sweep._cache_path(settings)
    assert path.name == f"bcq-Pendulum-v1-{_old(settings, 12)}.json"
    assert path.parent.parts[-2:] == ("rl", "sweeps")
