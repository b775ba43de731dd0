"""``Room``, the producers' counting semaphore (write/room.py), under real threads."""
import threading

from emdstream.write.room import Room


def test_room_never_lends_more_places_than_it_has_and_gets_them_all_back():
    places, holders, most, lock = 3, [0], [0], threading.Lock()
    room = Room(places)
    stop = threading.Event()

    def worker():
        while not stop.is_set():
            if room.take(timeout=0.01):
                with lock:
                    holders[0] += 1
                    most[0] = max(most[0], holders[0])
                with lock:
                    holders[0] -= 1
                room.give()

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for t in threads:
        t.start()
    stop.wait(1.0)
    stop.set()
    for t in threads:
        t.join(5)
    assert not any(t.is_alive() for t in threads)
    assert 1 <= most[0] <= places
    assert [room.take(timeout=0) for _ in range(places + 1)] == [True] * places + [False]


def test_a_waiter_is_woken_by_a_place_given_back():
    room = Room(1)
    assert room.take(timeout=0)
    got = []
    waiter = threading.Thread(target=lambda: got.append(room.take(timeout=10)))
    waiter.start()
    threading.Event().wait(0.05)  # the waiter sleeps in the queue by now
    room.give()
    waiter.join(5)
    assert got == [True]
    assert not room.take(timeout=0.01)  # the one place is held


def test_a_room_of_a_billion_places_is_made_at_once():
    room = Room(10 ** 9)  # a stream of tiny frames: one token a place would never finish
    assert room.take(timeout=0)
