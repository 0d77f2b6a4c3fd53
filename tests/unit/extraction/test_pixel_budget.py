"""The per-process budget of decoded pixels: images that would pass it wait their turn."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

import pytest

from core.errors import CorruptImage
from extraction.images import prepare_image
from extraction.pixel_budget import PixelBudget
from tests.sample_images import jpeg_for, png_for

MP = 1_000_000


def _until(condition: Callable[[], bool], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.001)


class _Holders:
    """Threads that each hold some pixels until told to let go; records the most held."""

    def __init__(self, budget: PixelBudget) -> None:
        self.budget = budget
        self.pool = ThreadPoolExecutor(max_workers=4)
        self.most_held = 0
        self._lock = threading.Lock()

    def hold(self, pixels: int) -> tuple[Future[None], threading.Event, threading.Event]:
        entered, let_go = threading.Event(), threading.Event()

        def run() -> None:
            with self.budget.hold(pixels):
                with self._lock:
                    self.most_held = max(self.most_held, self.budget.held)
                entered.set()
                assert let_go.wait(10)

        return self.pool.submit(run), entered, let_go


@pytest.fixture
def holders() -> _Holders:
    return _Holders(PixelBudget(100 * MP))


def test_two_images_that_together_pass_the_budget_are_decoded_one_after_the_other(
    holders: _Holders,
) -> None:
    first, first_in, first_go = holders.hold(60 * MP)
    assert first_in.wait(10)
    second, second_in, second_go = holders.hold(60 * MP)
    _until(lambda: holders.budget.waiting == 1)
    assert not second_in.is_set()

    first_go.set()
    first.result(10)
    assert second_in.wait(10)
    second_go.set()
    second.result(10)
    assert holders.most_held == 60 * MP
    assert holders.budget.held == 0


def test_images_that_fit_together_are_decoded_together(holders: _Holders) -> None:
    big, big_in, big_go = holders.hold(60 * MP)
    small, small_in, small_go = holders.hold(40 * MP)
    assert big_in.wait(10)
    assert small_in.wait(10)
    assert holders.most_held == 100 * MP
    big_go.set()
    small_go.set()
    big.result(10)
    small.result(10)


def test_an_image_larger_than_the_whole_budget_runs_alone_and_is_not_overtaken(
    holders: _Holders,
) -> None:
    first, first_in, first_go = holders.hold(60 * MP)
    assert first_in.wait(10)
    huge, huge_in, huge_go = holders.hold(150 * MP)
    _until(lambda: holders.budget.waiting == 1)
    # A small image coming later would fit beside the first, but waits behind the huge one.
    small, small_in, small_go = holders.hold(10 * MP)
    _until(lambda: holders.budget.waiting == 2)

    first_go.set()
    assert huge_in.wait(10)
    assert holders.budget.held == 150 * MP
    assert not small_in.is_set()
    huge_go.set()
    assert small_in.wait(10)
    small_go.set()
    for done in (first, huge, small):
        done.result(10)
    assert holders.most_held == 150 * MP
    assert holders.budget.held == 0


def test_preparing_an_image_holds_its_pixels_until_it_is_made() -> None:
    budget = PixelBudget(100)
    data = png_for(1)
    with ThreadPoolExecutor(max_workers=1) as pool:
        with budget.hold(100):
            prepared = pool.submit(
                prepare_image, data, max_side=2048, max_pixels=10**8, name="a", budget=budget
            )
            # The budget is full: the image waits for it rather than failing.
            _until(lambda: budget.waiting == 1)
            assert not prepared.done()
        assert prepared.result(10).data == data
    assert budget.held == 0

    with pytest.raises(CorruptImage):
        prepare_image(
            jpeg_for(1, size=(200, 200))[:300], max_side=2048, max_pixels=10**8, name="b",
            budget=budget,
        )  # fmt: skip
    assert budget.held == 0
