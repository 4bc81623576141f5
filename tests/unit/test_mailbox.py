"""The router's mailbox (actors/router_client.Mailbox) without Ray: one call in flight, what arrives
meanwhile goes with the next call, in order; a failing send loses its batch, not the sender."""

from __future__ import annotations

import threading

from actors.router_client import Mailbox


class Receiver:
    """A `send` that holds each call until the test releases it."""

    def __init__(self, fail_first: bool = False) -> None:
        self.batches: list[list[int]] = []
        self.arrived = threading.Semaphore(0)
        self.release = threading.Semaphore(0)
        self.fail_first = fail_first

    def __call__(self, batch: list[int]) -> None:
        self.batches.append(batch)
        self.arrived.release()
        assert self.release.acquire(timeout=10)
        if self.fail_first and len(self.batches) == 1:
            raise RuntimeError("receiver restarting")

    def next_batch(self) -> list[int]:
        assert self.arrived.acquire(timeout=10), "no batch was sent"
        return self.batches[-1]


def test_an_idle_mailbox_sends_at_once_and_a_busy_one_batches_in_order() -> None:
    receiver = Receiver()
    mailbox = Mailbox("test", receiver)
    mailbox.put(1)
    assert receiver.next_batch() == [1]  # idle: a batch of one, without waiting for more
    for message in range(2, 7):  # the first call is still in flight
        mailbox.put(message)
    receiver.release.release()
    assert receiver.next_batch() == [2, 3, 4, 5, 6]
    receiver.release.release()
    mailbox.put(7)
    assert receiver.next_batch() == [7]
    receiver.release.release()


def test_a_failed_send_loses_its_batch_but_the_mailbox_keeps_sending() -> None:
    receiver = Receiver(fail_first=True)
    mailbox = Mailbox("test", receiver)
    mailbox.put(1)
    assert receiver.next_batch() == [1]
    mailbox.put(2)
    receiver.release.release()  # the first send raises
    assert receiver.next_batch() == [2]
    receiver.release.release()
