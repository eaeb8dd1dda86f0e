"""The sample-data generator: deterministic, and it contains what the demo and tests need."""
from __future__ import annotations

from collections import Counter

from tracktor.dev.sample_data import Generator


def test_the_same_seed_gives_the_same_stream_and_another_seed_another():
    assert list(Generator(seed=11, people=300)) == list(Generator(seed=11, people=300))
    assert list(Generator(seed=11, people=300)) != list(Generator(seed=12, people=300))


def test_a_larger_stream_starts_with_the_smaller_one():
    small, large = list(Generator(seed=2, people=50)), list(Generator(seed=2, people=80))
    assert large[: len(small)] == small


def test_the_stream_has_every_kind_of_call_the_pipeline_handles():
    envs = list(Generator(seed=1, people=1000))
    kinds = Counter((e["app"], e["type"], e.get("cart_action")) for e in envs)
    for needed in [("demo-video", "identify", None), ("demo-video", "alias", None), ("demo-video", "set", None),
                   ("demo-shop", "cart", "set"), ("demo-shop", "cart", "purchase"), ("demo-shop", "cart", "cancel")]:
        assert kinds[needed] > 0, needed
    actions = Counter(e.get("action") for e in envs if e["app"] == "demo-video")
    steps = [actions[s] for s in ("Site visit", "Free movie view", "Registration", "Upgrade to Premium")]
    assert steps[0] > steps[1] > steps[2] > steps[3] > 0  # drop-offs along the journey
    sets = [e["data"] for e in envs if e["type"] == "set"]
    assert any(v is None for d in sets for v in d.values())  # a property deleted with null
    assert any(isinstance(d.get("interests"), list) for d in sets)
    assert {"email", "first_name", "last_name", "age", "city", "plan"} <= set().union(*sets)
    assert len({e["event_id"] for e in envs}) == len(envs)
