"""A model's colour comes from its name: the same in every range, order and process."""

import subprocess
import sys
from itertools import count

from dashboard.model_colours import PALETTE_SIZE, chart_slots, hashed_slot
from tests.live_server import PROJECT

NAMES = ["SDXL", "Flux", "DALL-E 3", "Midjourney", "Stable Diffusion XL Turbo", "Kandinsky"]


def colliding_pair() -> tuple[str, str]:
    """Two names that hash to the same colour, the first before the second by name."""
    seen: dict[int, str] = {}
    for number in count():
        name = f"model-{number:03d}"
        slot = hashed_slot(name)
        if slot in seen:
            return seen[slot], name
        seen[slot] = name
    raise AssertionError("unreachable")


def test_a_models_colour_is_a_palette_place_that_every_process_agrees_on():
    script = (
        "from dashboard.model_colours import hashed_slot; "
        f"print([hashed_slot(n) for n in {NAMES!r}])"
    )
    runs = {
        subprocess.run(
            [sys.executable, "-c", script],
            cwd=PROJECT,
            env={"PYTHONHASHSEED": seed, "PATH": ""},
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        for seed in ("1", "2", "3")
    }
    assert runs == {str([hashed_slot(name) for name in NAMES])}
    assert all(0 <= hashed_slot(name) < PALETTE_SIZE for name in NAMES)


def test_the_hash_spreads_names_over_the_whole_palette():
    slots = {hashed_slot(f"model {number}") for number in range(200)}
    assert slots == set(range(PALETTE_SIZE))


def test_a_model_whose_colour_nobody_shares_keeps_it_in_any_company():
    first, _ = colliding_pair()
    alone = next(n for n in NAMES if hashed_slot(n) != hashed_slot(first))
    assert chart_slots([alone])[alone] == hashed_slot(alone)
    others = [n for n in NAMES if hashed_slot(n) != hashed_slot(alone)]
    assert chart_slots([alone, *others])[alone] == hashed_slot(alone)


def test_models_of_one_chart_never_share_a_colour():
    for size in range(1, PALETTE_SIZE + 1):
        names = [f"m{number}" for number in range(size)]
        assert len(set(chart_slots(names).values())) == size


def test_of_two_models_with_one_colour_the_first_by_name_keeps_it_and_the_other_moves_on():
    first, second = colliding_pair()
    slot = hashed_slot(first)
    assert chart_slots([second, first]) == {first: slot, second: (slot + 1) % PALETTE_SIZE}
    assert chart_slots([second]) == {second: slot}  # alone, it has its own colour


def test_the_colours_do_not_depend_on_the_order_the_models_come_in():
    assert chart_slots(NAMES) == chart_slots(list(reversed(NAMES)))


def test_more_models_than_colours_share_colours_rather_than_fail():
    names = [f"m{number}" for number in range(PALETTE_SIZE + 3)]
    slots = chart_slots(names)
    assert set(slots) == set(names)
    assert set(slots.values()) == set(range(PALETTE_SIZE))
