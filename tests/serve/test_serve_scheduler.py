"""The scheduler thread on its own: the bound on sequences held, drain, cancel, and a failed step that fails
the requests in flight without stopping the server."""

from __future__ import annotations

import queue

import pytest

from alm.sample import Engine, SamplingConfig
from alm.serve.scheduler import Draining, Job, Overloaded, Scheduler, Ticket
from testkit.models import tiny_model

GREEDY = SamplingConfig(greedy=True, max_new_tokens=5)


@pytest.fixture
def scheduler(chat_tokenizer):
    model = tiny_model(chat_tokenizer.vocab_size)
    sched = Scheduler(lambda: Engine(model, device="cpu", slots=2, tokenizer=chat_tokenizer), capacity=3)
    sched.start()
    yield sched
    sched.close()


def ticket(*jobs: Job) -> tuple[Ticket, queue.Queue]:
    updates: queue.Queue = queue.Queue()
    return Ticket(list(jobs), updates.put), updates


def ends(updates: queue.Queue, n: int) -> list:
    done = []
    while len(done) < n:
        update = updates.get(timeout=30)
        if update.ended:
            done.append(update)
    return done


def test_text_and_id_prompts_run_to_their_end(scheduler):
    t, updates = ticket(Job("ROMEO:", GREEDY), Job([0, 40, 41], GREEDY, eos_ids=(1,)))
    scheduler.submit(t)
    finished = ends(updates, 2)
    assert sorted(u.index for u in finished) == [0, 1]
    assert all(u.finish == "length" and u.info.new_tokens == 5 for u in finished)
    assert scheduler.held == 0


def test_the_bound_drain_and_cancel(scheduler):
    long = SamplingConfig(greedy=True, max_new_tokens=100_000, ignore_eos=True)
    first, first_updates = ticket(Job("a", long), Job("b", long))
    scheduler.submit(first)
    with pytest.raises(Overloaded):
        scheduler.submit(ticket(Job("c", GREEDY), Job("d", GREEDY))[0])  # 2 + 2 > capacity 3
    small, small_updates = ticket(Job("c", GREEDY))
    scheduler.submit(small)  # 3 held: waits for a slot
    first.cancel()
    assert {u.finish for u in ends(first_updates, 2)} == {"cancelled"}
    assert ends(small_updates, 1)[0].finish == "length"
    scheduler.drain()
    with pytest.raises(Draining):
        scheduler.submit(ticket(Job("e", GREEDY))[0])


def test_a_failed_step_fails_its_requests_and_the_server_goes_on(scheduler, chat_tokenizer):
    bad, bad_updates = ticket(Job([chat_tokenizer.vocab_size + 5], GREEDY))  # an id past the embedding
    scheduler.submit(bad)
    (failed,) = ends(bad_updates, 1)
    assert failed.error and "generation failed" in failed.error
    good, good_updates = ticket(Job("ROMEO:", GREEDY))
    scheduler.submit(good)
    assert ends(good_updates, 1)[0].finish == "length" and scheduler.held == 0
