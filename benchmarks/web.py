"""What the live view costs a run: seconds per Adam step at 512x384 with WEB off and on.

    python benchmarks/web.py                    # 512x384, the synthetic full-size VGG-19
    python benchmarks/web.py --rounds 5 --steps 20
    python benchmarks/web.py --quick --width 128   # a smoke run: tiny weights

Both modes run in this one process, alternating (off, on, off, on, ...) so that a machine
that speeds up or slows down mid-benchmark affects both alike. "On" is the real thing: the
server bound, a page connected to the event stream that fetches every image it is told
of, as the browser does, with WEB_EVERY 1 second (--every). Each run's first steps (tracing) are
left out. Prints the CPU, the median step time of each mode over all rounds and their ratio,
and the median of each round's own on/off ratio (the figure to quote: its two runs are
neighbours in time, in alternating order); the target is within 3%.
"""

from __future__ import annotations

import argparse
import http.client
import json
import logging
import os
import statistics
import sys
import tempfile
import threading

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)

from benchmarks.machine import cpu_name  # noqa: E402
from neural_style import web  # noqa: E402
from neural_style.gatys import run  # noqa: E402
from neural_style.gatys.events import Observer  # noqa: E402
from neural_style.settings.gatys import Settings  # noqa: E402
from neural_style.settings.web import WebSettings  # noqa: E402

CONTENT = os.path.join(REPO_ROOT, "images", "content.jpg")
STYLE = os.path.join(REPO_ROOT, "images", "style.jpg")
SYNTHETIC = os.path.join(REPO_ROOT, "weights", "synthetic-vgg-verydeep-19-v1.mat")
WARM_UP = 3  # steps left out of each run: tracing and the first allocations


class StepTimes(Observer):
    def __init__(self) -> None:
        self.seconds: list[float] = []

    def step(self, event) -> None:
        self.seconds.append(event.seconds)


def page(session: web.LiveSession, stop: threading.Event) -> None:
    """A browser's worth of traffic: the event stream, and each image it announces."""
    port, token = session.server.port, session.token
    stream = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    stream.request("GET", f"/events?token={token}")
    response = stream.getresponse()
    images = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    kind = ""
    while not stop.is_set():
        line = response.readline().decode()
        if not line:
            return
        if line.startswith("event: "):
            kind = line[7:].strip()
        elif line.startswith("data: ") and kind == "image":
            message = json.loads(line[6:])
            images.request("GET", f"/image/{message['name']}?token={token}&v={message['version']}")
            images.getresponse().read()


def one_run(settings: Settings, live_view: bool, every: float) -> list[float]:
    times = StepTimes()
    quiet = open(os.devnull, "w")  # noqa: SIM115
    observers = run.standard_observers(settings, quiet)
    if not live_view:
        run.stylize(settings, quiet, observers=[*observers, times])
        return times.seconds[WARM_UP:]
    web_settings = WebSettings(web=True, web_port=0, web_host="127.0.0.1", web_every=every)
    stop = threading.Event()
    with web.serving(web_settings, "photo", settings, quiet) as live:
        reader = threading.Thread(target=page, args=(live, stop), daemon=True)
        reader.start()
        run.stylize(settings, quiet, observers=[*observers, times, live.gatys_view()])
        stop.set()
    return times.seconds[WARM_UP:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="runs of each mode")
    parser.add_argument("--steps", type=int, default=15, help="steps per run")
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--weights", default=SYNTHETIC)
    parser.add_argument("--every", type=float, default=1.0, help="WEB_EVERY, seconds")
    parser.add_argument("--quick", action="store_true", help="tiny weights")
    parser.add_argument("--precision", default="auto", help="PRECISION (auto: bfloat16 on CPUs)")
    options = parser.parse_args()
    logging.getLogger("tensorflow").setLevel(logging.ERROR)  # retracing notes per run
    folder = tempfile.mkdtemp(prefix="web-benchmark-")
    weights, width = options.weights, options.width
    if options.quick:
        sys.path.insert(0, os.path.join(REPO_ROOT))
        from tests.support import save_mat, tiny_variables

        weights = save_mat(os.path.join(folder, "tiny.mat"), tiny_variables())
    import settings as user_settings

    times: dict[bool, list[float]] = {False: [], True: []}
    ratios = []  # each round's on/off: two neighbouring runs, so a drifting load cancels
    for number in range(options.rounds):
        medians = {}
        # Off first in even rounds, on first in odd ones: neither always comes second.
        for live_view in (False, True) if number % 2 == 0 else (True, False):
            settings = Settings.from_module(
                user_settings,
                content_image=CONTENT,
                style_image=(STYLE,),
                vgg_model_path=weights,
                output_image=os.path.join(folder, f"{number}-{live_view}", "result"),
                image_width=width,
                train_steps=options.steps,
                snapshot_every=0,
                print_every=1000,
                precision=options.precision,
            )
            seconds = one_run(settings, live_view, options.every)
            times[live_view] += seconds
            medians[live_view] = statistics.median(seconds)
            print(
                f"round {number + 1}: web {'on ' if live_view else 'off'} "
                f"{statistics.median(times[live_view]):.4f} s/step so far",
                flush=True,
            )
        ratios.append(medians[True] / medians[False])
    off, on = statistics.median(times[False]), statistics.median(times[True])
    print(f"CPU: {cpu_name()} ({os.cpu_count()} threads)")
    print(f"{width} px wide, {options.rounds} rounds of {options.steps} steps, median s/step:")
    print(f"  web off {off:.4f}   web on {on:.4f}   on/off {on / off:.4f} ({on / off - 1:+.2%})")
    paired = statistics.median(ratios)
    print(f"  each round's on/off: {', '.join(f'{r:.3f}' for r in ratios)}")
    print(f"  median of the rounds' on/off {paired:.4f} ({paired - 1:+.2%})")


if __name__ == "__main__":
    main()
