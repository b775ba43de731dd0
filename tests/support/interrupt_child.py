"""A producer interrupted by SIGINT thousands of times while it waits for the writer.

usage: python interrupt_child.py KIND PATH   (KIND: k1, gathered, counted,
counted_slots, put, frame_buffer)

The writer thread is held up (another thread holds its I/O lock, as a stalled disk would) for
STALL seconds, so the producer's puts wait for room; a thread sends the main thread SIGINT every
INTERVAL seconds throughout. Every KeyboardInterrupt is caught and the put tried again (a put
interrupted after it took its frame may store it twice: the count below is the writer's own).
Prints ``put D INTERRUPTS`` once D puts completed (or the time ran out), then closes and prints
``closed WRITTEN PUT`` (frames in the file, frames the stream took). A hang is ended by
faulthandler with a dump of every thread.
"""
import faulthandler
import signal
import sys
import threading
import time

import numpy as np

from emdstream import Acquisition, CountedStream, Stream
from emdstream.encoders import BitshuffleLZ4

N, STALL, INTERVAL, LIMIT = 300, 0.5, 2e-4, 3.0


def main() -> None:
    kind, path = sys.argv[1], sys.argv[2]
    faulthandler.dump_traceback_later(60, exit=True)
    if kind == "counted":  # waits for room in the event queue (before the events are taken)
        streams = [CountedStream("s", (32, 32), n_frames=10 * N, queue_events=256)]
    elif kind == "counted_slots":  # waits for a chunk of the counts image (slots, after events)
        streams = [CountedStream("s", (32, 32), n_frames=10 * N, queue_events=1 << 20,
                                 chunk_frames=2, queue_frames=4)]
    else:
        streams = [Stream("s", (64, 64), n_frames=10 * N, queue_frames=4,
                          chunk_frames=1 if kind == "k1" else 16)]  # put: 16 too
    acq = Acquisition(path, streams, flush_seconds=0.01, overwrite=True)
    s = acq["s"]
    blob = np.asarray(BitshuffleLZ4().encode(np.arange(64 * 64, dtype=np.uint16)
                                             .reshape(64, 64))).tobytes()
    events = np.arange(50, dtype=np.uint32)
    frame = np.arange(64 * 64, dtype=np.uint16).reshape(64, 64)

    def fill() -> None:
        with s.frame_buffer() as buf:
            buf[...] = frame

    put = {"counted": lambda: s.put_events(events),  # a different number of events each put:
           # events taken without their slot shift every later slot's (verify sees it)
           "counted_slots": lambda: s.put_events(events[:1 + int(time.monotonic() * 1e6) % 50]),
           "put": lambda: s.put(frame),
           "frame_buffer": fill}.get(kind, lambda: s.put_compressed(blob))

    stalled = threading.Event()

    def stall() -> None:
        with acq._thread.io_lock:  # the writer thread cannot write while this is held
            stalled.set()
            time.sleep(STALL)

    main_thread, stop = threading.get_ident(), threading.Event()

    def interrupt() -> None:
        while not stop.is_set():
            signal.pthread_kill(main_thread, signal.SIGINT)
            time.sleep(INTERVAL)

    armed = False  # SIGINTs outside put (this loop's own code) are ignored

    def on_sigint(signum, frame):
        if armed:
            raise KeyboardInterrupt

    threading.Thread(target=stall, daemon=True).start()
    stalled.wait()
    signal.signal(signal.SIGINT, on_sigint)
    threading.Thread(target=interrupt, daemon=True).start()
    done = interrupts = 0
    t0 = time.monotonic()
    while done < N and time.monotonic() - t0 < LIMIT:
        try:
            armed = True
            put()
            armed = False
            done += 1
        except KeyboardInterrupt:
            armed = False
            interrupts += 1
    stop.set()
    time.sleep(0.01)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    print("put", done, interrupts, flush=True)
    faulthandler.dump_traceback_later(20, exit=True)
    acq.close()
    print("closed", s.frames_written, s.frames_put, flush=True)


if __name__ == "__main__":
    main()
