"""Style-transfer runs from one Settings object, as `python train.py` does them.

settings -> images -> network -> losses -> optimiser -> snapshots: this module wires them
together and owns a run's files, all under the OUTPUT_IMAGE prefix: snapshots, the final
image, the losses log and plot, the settings record and the checkpoint.

One photo, or a batch (CONTENT_IMAGE a folder or a glob): the network and the style
targets are built once and every photo is stylised with them, one at a time or BATCH_SIZE
together (batch_run.py).
"""

from __future__ import annotations

import contextlib
import ctypes
import glob
import os
import sys
from typing import TYPE_CHECKING, NamedTuple, TextIO

import numpy as np

from neural_style import checkpoint as checkpoints
from neural_style import colors, images, memory, plots, tile_layout
from neural_style.config import DEFAULT_VGG_MODEL_PATH, Settings
from neural_style.errors import UserError
from neural_style.reporting import (
    LossLog,
    ProgressPrinter,
    snapshot_path,
    write_settings_record,
)
from neural_style.vgg import GET_REAL_WEIGHTS, VGG19, read_vgg19_mat, resolve_precision

if TYPE_CHECKING:  # these import TensorFlow, which start_tensorflow() imports quietly
    from neural_style.losses import LossWeights

SYNTHETIC_WEIGHTS_PATH = os.path.join("weights", "synthetic-vgg-verydeep-19-v1.mat")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")
# mallopt's parameter number for the mmap threshold, and the threshold a run sets.
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 1 << 20
# Divergences in a row after which a run gives up (the learning rate has halved each time).
MAX_DIVERGENCES_IN_A_ROW = 8


class RunResult(NamedTuple):
    output_path: str  # the final image
    steps: int  # steps taken over all stages
    losses: dict[str, float]  # the losses at the last step


class BatchResult(NamedTuple):
    results: list[RunResult]  # one per photo stylised
    failures: list[tuple[str, str]]  # (photo, why it failed)


class Phase(NamedTuple):
    net: VGG19  # the network of this part of a stage
    first: int  # the first step to take (after a resume: the one after the checkpoint's)
    last: int
    switched: bool  # a later phase: the optimiser goes on with a new loss here


class Stage(NamedTuple):
    size: tuple[int, int]  # (height, width) of the image in this stage
    steps: int


# --- start-up ---------------------------------------------------------------------------


@contextlib.contextmanager
def _native_stderr_silenced():
    """Hide what TensorFlow's C++ side prints while it starts (CUDA probing on machines
    without a GPU, oneDNN notes): it writes to file descriptor 2 directly, before its log
    level is read, and buries the progress lines. Setting TF_CPP_MIN_LOG_LEVEL yourself
    shows it all again."""
    if "TF_CPP_MIN_LOG_LEVEL" in os.environ:
        yield
        return
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


@contextlib.contextmanager
def _keras_held_back():
    """Keep `import tensorflow` from importing Keras, which a Gatys run never uses: TF
    imports Keras's optimisers only to register them, inside a try that lets an import
    fail. That is about 0.5 s of start-up and 60 MB (more where matplotlib is installed,
    which Keras imports too). Keras imports normally afterwards, and tf.keras still works."""
    if "keras" in sys.modules or "tensorflow" in sys.modules:
        yield
        return
    sys.modules["keras"] = None  # an import of keras now fails at once
    try:
        yield
    finally:
        if sys.modules.get("keras", 0) is None:
            del sys.modules["keras"]


def _return_freed_memory_promptly() -> None:
    """Have glibc's malloc serve blocks of 1 MiB and more from their own mappings, which
    go back to the system when freed. By default it raises that threshold as blocks are
    freed, and the activations a step frees then stay in the heap, fragmented: the
    resident memory of a 512x384 run grew by about 110 MB over its first steps (measured,
    benchmarks/speed.py). A no-op where the C library is not glibc."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)
    except (OSError, AttributeError):
        pass


def start_tensorflow(*, without_keras: bool = False) -> tuple[str, bool]:
    """Import TensorFlow (`without_keras`: see _keras_held_back) and find its devices: a
    line saying which one the run uses, and whether it is a GPU."""
    _return_freed_memory_promptly()
    held_back = _keras_held_back() if without_keras else contextlib.nullcontext()
    with _native_stderr_silenced(), held_back:
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        return f"running on the GPU ({', '.join(gpu.name for gpu in gpus)})", True
    return "running on the CPU (TensorFlow sees no GPU)", False


def resolve_weights_path(path: str, stream: TextIO) -> str:
    """The .mat file to load: `path`, or the synthetic stand-in when the default is missing."""
    if os.path.exists(path) or os.path.normpath(path) != os.path.normpath(DEFAULT_VGG_MODEL_PATH):
        return path  # a path the user gave is loaded, and reported, as it is
    print(
        f"note: {path} not found, so a synthetic VGG-19 is used (textures, not art); "
        f"for real results {GET_REAL_WEIGHTS}",
        file=stream,
    )
    synthetic_path = os.path.join(os.path.dirname(path), os.path.basename(SYNTHETIC_WEIGHTS_PATH))
    if not os.path.exists(synthetic_path):
        from neural_style.synthetic import write_synthetic_vgg19

        print(f"writing the synthetic weights to {synthetic_path} (once)", file=stream, flush=True)
        write_synthetic_vgg19(synthetic_path)
    return synthetic_path


def content_paths(pattern: str) -> tuple[list[str], bool]:
    """The photos CONTENT_IMAGE names, and whether it names a batch (a folder or a glob)."""
    if os.path.isdir(pattern):
        found = [os.path.join(pattern, name) for name in os.listdir(pattern)]
    elif glob.has_magic(pattern):
        found = glob.glob(pattern)
    else:
        return [pattern], False
    photos = sorted(
        path for path in found if os.path.isfile(path) and path.lower().endswith(IMAGE_SUFFIXES)
    )
    if not photos:
        raise UserError(
            f"{pattern}: no images ({', '.join(IMAGE_SUFFIXES)}) found; set CONTENT_IMAGE in "
            "settings.py or pass --content_image=PATH (a file, a folder or a glob)"
        )
    return photos, True


def loss_weights(settings: Settings) -> LossWeights:
    from neural_style.losses import LossWeights

    return LossWeights(
        content_layers=settings.content_loss_layers,
        style_layers=settings.style_loss_layers,
        alpha=settings.alpha,
        beta=settings.beta,
        tv_weight=settings.tv_weight,
    )


def plan_stages(settings: Settings, content_hw: tuple[int, int]) -> list[Stage]:
    """One stage at the output size, or one per COARSE_TO_FINE width with its steps."""
    final = images.output_size(content_hw, settings.image_width, settings.image_height)
    if not settings.coarse_to_fine:
        return [Stage(final, settings.train_steps)]
    steps = settings.coarse_to_fine_steps or (settings.train_steps,) * len(settings.coarse_to_fine)
    stages = []
    for width, count in zip(settings.coarse_to_fine, steps, strict=True):
        height = max(round(final[0] * width / final[1]), images.MIN_SIDE)
        stages.append(Stage((height, width), count))
    return stages


def fresh_prefix(prefix: str, stream: TextIO) -> str:
    """`prefix`, or the first free `prefix_2`, `prefix_3`... when an earlier run used it."""

    def used(candidate: str) -> bool:
        made = (
            snapshot_path(candidate),
            f"{candidate}-losses.csv",
            checkpoints.checkpoint_path(candidate),
        )
        return any(os.path.exists(path) for path in made)

    if not used(prefix):
        return prefix
    number = 2
    while used(f"{prefix}_{number}"):
        number += 1
    print(
        f"note: {snapshot_path(prefix)} is from an earlier run, so this run writes "
        f"{prefix}_{number}.* instead; pass --overwrite to replace it",
        file=stream,
    )
    return f"{prefix}_{number}"


# --- the pipeline -------------------------------------------------------------------------


class Pipeline:
    """What every photo of a run shares: the settings, the network, the style images and
    their Gram targets (computed once per stage), and the terminal."""

    def __init__(
        self,
        settings: Settings,
        net: VGG19,
        styles: list[np.ndarray],
        stream: TextIO,
        *,
        on_gpu: bool = False,
        exact_net: VGG19 | None = None,
    ):
        self.settings = settings
        self.net = net
        # The float32 network of FLOAT32_FINISH's last steps, when `net` is a mixed one.
        self.exact_net = exact_net
        self.on_gpu = on_gpu
        self.styles = styles
        self.stream = stream
        self.weights = loss_weights(settings)
        self.layers = sorted(
            {name for name, _ in self.weights.content_layers + self.weights.style_layers}
        )
        self.blend = settings.style_blend_weights or (1.0,) * len(styles)
        self._style_grams: dict = {}
        self._plot = None
        self._notes_shown: set[str] = set()

    def phases(self, stage_start: int, steps: int, done: int) -> list[Phase]:
        """The phases of a stage of `steps` steps after `stage_start`, for a run `done`
        steps in: all in the run's precision, or the last FLOAT32_FINISH of them in float32
        when the run's precision is a mixed one. Phases a resumed run is past are left
        out, except the last, whose optimiser the checkpoint restores."""
        counts = [(self.net, steps)]
        if self.exact_net is not None:
            exact = round(steps * self.settings.float32_finish)
            counts = [(self.net, steps - exact), (self.exact_net, exact)]
        phases, start = [], stage_start
        for net, count in counts:
            if count > 0:
                phases.append(Phase(net, max(done, start) + 1, start + count, start > stage_start))
                start += count
        return [phase for phase in phases[:-1] if phase.first <= phase.last] + phases[-1:]

    def adam_options(self) -> dict[str, float]:
        """The Adam settings, as AdamOptimizer and BatchAdamOptimizer take them."""
        s = self.settings
        return {
            "learning_rate": s.learning_rate,
            "beta1": s.beta1,
            "beta2": s.beta2,
            "epsilon": s.epsilon,
        }

    def targets(self, net: VGG19, stage_index: int, content: np.ndarray, layout):
        """The content features and style Grams that `net` pulls the image towards."""
        from neural_style.losses import Targets
        from neural_style.optimize import content_targets

        size = content.shape[:2]
        tile_side = tile_layout.core_side(size, layout.grid) if layout else 0
        return Targets(
            content=content_targets(net, content, self.weights, layout=layout),
            style_grams=self.style_grams(net, stage_index, size, content, tile_side),
        )

    def style_grams(
        self,
        net: VGG19,
        stage_index: int,
        size: tuple[int, int],
        content: np.ndarray,
        tile_side: int = 0,
    ) -> dict:
        """The blended style Grams for a stage: computed once per stage and network and
        shared by every photo, except in histogram mode, which recolours the styles to each
        photo. With `tile_side`, style images larger than that are run in tiles of about
        that size."""
        if self.settings.preserve_colors == "histogram":
            styles = [colors.match_color_histogram(style, content) for style in self.styles]
            return self._grams_of(net, styles, size, tile_side)
        key = (stage_index, net.precision)
        if key not in self._style_grams:
            self._style_grams[key] = self._grams_of(net, self.styles, size, tile_side)
        return self._style_grams[key]

    def _grams_of(
        self, net: VGG19, styles: list[np.ndarray], size: tuple[int, int], tile_side: int
    ) -> dict:
        from neural_style.optimize import style_targets

        scale = self.settings.style_scale
        style_size = (
            max(round(size[0] * scale), images.MIN_SIDE),
            max(round(size[1] * scale), images.MIN_SIDE),
        )
        resized = [images.resize_image(style, style_size) for style in styles]
        return style_targets(net, resized, self.blend, self.weights, tile_side=tile_side)

    def memory_plan(self, size: tuple[int, int], batch: int = 1) -> memory.MemoryPlan:
        """How a step at `size` (of `batch` images) fits in RAM: whole, or in tiles
        (TILE_SIZE's, or the largest that fit; one image only); a UserError suggesting the
        largest size that fits otherwise. A GPU's memory is not checked: it gets
        TILE_SIZE's tiles, if any."""
        if self.on_gpu:
            tile_size = self.settings.tile_size
            grid = tile_layout.grid_for_core(size, tile_size) if tile_size else (1, 1)
            return memory.MemoryPlan(0, 0, grid)
        # The float32 finish, if any, needs the most memory.
        precision = self.exact_net.precision if self.exact_net else self.net.precision
        return memory.plan_step(
            size,
            precision,
            tile_size=self.settings.tile_size,
            layers=self.layers,
            content_layers=[name for name, _ in self.weights.content_layers],
            batch=batch,
        )

    def layout(self, size: tuple[int, int], plan: memory.MemoryPlan):
        """Where the tiles of a step at `size` lie, or None for the whole image at once."""
        if not plan.tiled:
            return None
        return tile_layout.tile_layout(size, plan.grid, tile_layout.tile_margin(self.layers))

    def say_float32_finish(self, label: str, first: int, last: int) -> None:
        print(
            f"{label}float32 from step {first} to {last} "
            f"(FLOAT32_FINISH {self.settings.float32_finish:g})",
            file=self.stream,
        )

    def make_loss(self, net: VGG19, targets, layout):
        """The loss function of a stage: over the whole image, or in tiles."""
        from neural_style.optimize import LossFunction
        from neural_style.tiling import TiledLossFunction

        if layout is not None:
            return TiledLossFunction(net, targets, self.weights, layout)
        return LossFunction(net, targets, self.weights)

    def start_image(self, content: np.ndarray) -> np.ndarray:
        from neural_style.optimize import initial_image

        init, size = self.settings.init, content.shape[:2]
        if init == "content":
            base = content
        elif init == "style":
            base = images.resize_image(self.styles[0], size)
        elif init == "noise":
            return initial_image(content, 1.0, self.settings.seed)
        else:
            base = images.resize_image(images.load_image(init, "INIT"), size)
        return initial_image(base, self.settings.noise, self.settings.seed)

    def make_optimizer(self, loss, start: np.ndarray):
        from neural_style.optimize import AdamOptimizer, LbfgsOptimizer

        if self.settings.optimizer == "lbfgs":
            return LbfgsOptimizer(loss, start)
        return AdamOptimizer(loss, start, **self.adam_options())

    def write_plot(self, prefix: str, *, wait: bool = False) -> None:
        """Start drawing `<prefix>-losses.png` in a child process, after the plot before it
        is done; `wait` for this one too (at the end of a run)."""
        self.finish_plot()
        self._plot = plots.PlotProcess(f"{prefix}-losses.csv", f"{prefix}-losses.png")
        if wait:
            self.finish_plot()

    def finish_plot(self) -> None:
        """Wait for the plot being drawn, if any; say once why plots are missing."""
        if self._plot is None:
            return
        note, self._plot = self._plot.wait(), None
        if note and note not in self._notes_shown:
            print(note, file=self.stream)
            self._notes_shown.add(note)


class PhotoRun:
    """One photo through every stage: snapshots, checkpoints, the log and the result."""

    def __init__(self, pipeline: Pipeline, content_path: str, prefix: str):
        self.pipeline = pipeline
        self.settings = pipeline.settings
        self.stream = pipeline.stream
        self.prefix = prefix
        self.photo = images.load_image(content_path, "CONTENT_IMAGE")
        self.stages = plan_stages(self.settings, self.photo.shape[:2])
        self.total_steps = sum(stage.steps for stage in self.stages)
        self.final_path = snapshot_path(prefix)
        # Checked now, so that an image too large for the memory is refused before it starts.
        self.memory_plans = [pipeline.memory_plan(stage.size) for stage in self.stages]
        for stage, plan in zip(self.stages, self.memory_plans, strict=True):
            self._describe_plan(stage, plan)

    def _describe_plan(self, stage: Stage, plan: memory.MemoryPlan) -> None:
        size = f"{stage.size[1]}x{stage.size[0]}"
        if plan.tiled:
            why = (
                f"TILE_SIZE {self.settings.tile_size}"
                if self.settings.tile_size
                else "one step over the whole image would be too large for memory"
            )
            gib = plan.estimate_bytes / memory.GIB
            needs = f", about {gib:.1f} GiB" if plan.estimate_bytes else ""
            print(
                f"note: {size} is computed in {plan.grid[0]}x{plan.grid[1]} tiles ({why}{needs});"
                " the result is the same as in one piece, each step takes longer",
                file=self.stream,
            )

    def visible(self, image: np.ndarray, content: np.ndarray) -> np.ndarray:
        """What is written: the image, or its brightness on the photo's colours."""
        if self.settings.preserve_colors == "luminance":
            return colors.preserve_colors(image, content)
        return image

    def save(self, path: str, image: np.ndarray, content: np.ndarray) -> None:
        images.save_image(path, self.visible(image, content))

    def run(self) -> RunResult:
        s, pipeline = self.settings, self.pipeline
        resumed = self._load_checkpoint() if s.resume else None
        first_stage, done = (resumed.stage, resumed.step) if resumed else (0, 0)
        if done >= self.total_steps:
            print(
                f"{self.prefix}: already complete at step {done}; raise TRAIN_STEPS "
                "(--train_steps) to go on",
                file=self.stream,
            )
            return RunResult(self.final_path, done, {})
        self.step = done
        write_settings_record(f"{self.prefix}-settings.json", checkpoints.settings_record(s))
        progress = ProgressPrinter(self.total_steps, s.print_every, self.stream)
        image, result, stage_start = None, None, 0
        with LossLog(f"{self.prefix}-losses.csv", keep_until=done if resumed else None) as log:
            for index, stage in enumerate(self.stages):
                stage_end = stage_start + stage.steps
                if index < first_stage:
                    stage_start = stage_end
                    continue
                content = images.resize_image(self.photo, stage.size)
                layout = pipeline.layout(stage.size, self.memory_plans[index])
                if image is None:
                    start = pipeline.start_image(content)
                else:  # each stage starts from the last one's result, upsampled
                    start = images.resize_image(image, stage.size)
                label = self._stage_label(index, stage)
                optimizer = None
                try:
                    for phase in pipeline.phases(stage_start, stage.steps, done):
                        net = phase.net
                        loss = pipeline.make_loss(
                            net, pipeline.targets(net, index, content, layout), layout
                        )
                        if optimizer is None:
                            optimizer = pipeline.make_optimizer(loss, start)
                            if resumed and index == first_stage:
                                optimizer.restore(resumed.optimizer_state)
                        else:
                            optimizer.use_loss(loss)
                        if phase.switched and phase.first <= phase.last:
                            pipeline.say_float32_finish(label, phase.first, phase.last)
                        result = (
                            self._optimise(
                                optimizer,
                                content,
                                phase.first,
                                phase.last,
                                log,
                                progress,
                                label,
                                index,
                            )
                            or result
                        )
                except KeyboardInterrupt:
                    self.save(self.final_path, optimizer.best(), content)
                    self._checkpoint(optimizer, index, self.step)
                    print(
                        f"\ninterrupted at step {self.step}: saved "
                        f"{self.final_path} and a checkpoint; --resume continues",
                        file=self.stream,
                        flush=True,
                    )
                    raise
                image = optimizer.best()
                stage_start = stage_end
        self.save(self.final_path, image, content)
        self._checkpoint(optimizer, len(self.stages) - 1, stage_start)
        pipeline.write_plot(self.prefix, wait=True)
        print(f"saved {self.final_path}", file=self.stream)
        last = result.losses if result else {}
        return RunResult(self.final_path, stage_start, last)

    def _stage_label(self, index: int, stage: Stage) -> str:
        if len(self.stages) == 1:
            return ""
        return f"stage {index + 1}/{len(self.stages)} {stage.size[1]}x{stage.size[0]}  "

    def _optimise(self, optimizer, content, first, last, log, progress, label, index):
        s, result, divergences = self.settings, None, 0
        for result in optimizer.steps(last - first + 1, first=first):
            self.step = result.step
            log.write(result.step, result.losses, result.seconds)
            progress.update(
                result.step,
                result.losses,
                evaluations=result.evaluations,
                note=result.note,
                label=label,
            )
            divergences = divergences + 1 if result.note else 0
            if divergences >= MAX_DIVERGENCES_IN_A_ROW:
                self.save(self.final_path, optimizer.best(), content)
                raise UserError(
                    f"the loss became {result.losses['total']} at step {result.step} and kept "
                    f"diverging after {divergences} restarts at ever lower learning rates; "
                    f"the best image is saved as {self.final_path}; lower LEARNING_RATE "
                    "(--learning_rate) or the loss weights"
                )
            if s.snapshot_every and result.step % s.snapshot_every == 0:
                self.save(snapshot_path(self.prefix, result.step), optimizer.best(), content)
                self._checkpoint(optimizer, index, result.step)
                self.pipeline.write_plot(self.prefix)
        if result is not None and result.step < last:
            message = getattr(optimizer, "message", "")
            print(
                f"{label}the optimiser stopped at step {result.step} of {last}: {message}",
                file=self.stream,
            )
        return result

    def _checkpoint(self, optimizer, stage: int, step: int) -> None:
        checkpoints.save_checkpoint(
            checkpoints.checkpoint_path(self.prefix),
            checkpoints.Checkpoint(
                stage, step, optimizer.state(), checkpoints.settings_record(self.settings)
            ),
        )

    def _load_checkpoint(self) -> checkpoints.Checkpoint:
        path = checkpoints.checkpoint_path(self.prefix)
        loaded = checkpoints.load_checkpoint(path)
        checkpoints.check_resumable(loaded, self.settings, path)
        print(f"resuming from {path} at step {loaded.step}", file=self.stream)
        return loaded


# --- entry point ---------------------------------------------------------------------------


def _batch_prefix(settings: Settings, photo: str) -> str:
    stem = os.path.splitext(os.path.basename(photo))[0]
    return f"{settings.output_image}-{stem}"


def stylize(settings: Settings, stream: TextIO | None = None) -> RunResult | BatchResult:
    """Stylise CONTENT_IMAGE (one photo, or every photo of a folder or glob)."""
    stream = stream or sys.stdout
    photos, is_batch = content_paths(settings.content_image)
    styles = [images.load_image(path, "STYLE_IMAGE") for path in settings.style_image]
    if not is_batch:
        images.load_image(photos[0], "CONTENT_IMAGE")  # a bad photo fails before TF starts
    vgg_weights = read_vgg19_mat(
        resolve_weights_path(settings.vgg_model_path, stream), stream=stream
    )
    device, on_gpu = start_tensorflow(without_keras=True)
    print(device, file=stream, flush=True)
    precision = resolve_precision(settings.precision, on_gpu, settings.optimizer)
    net = VGG19(vgg_weights, pooling=settings.pooling, precision=precision)
    exact_net = None
    if precision != "float32" and settings.float32_finish > 0:
        exact_net = VGG19(vgg_weights, pooling=settings.pooling)
    del vgg_weights  # the networks hold their own copies, in their precisions
    pipeline = Pipeline(settings, net, styles, stream, on_gpu=on_gpu, exact_net=exact_net)

    def prefix_for(photo: str) -> str:
        prefix = _batch_prefix(settings, photo) if is_batch else settings.output_image
        if settings.resume or settings.overwrite:
            return prefix
        return fresh_prefix(prefix, stream)

    try:
        if not is_batch:
            run = PhotoRun(pipeline, photos[0], prefix_for(photos[0]))
            _describe(run, photos[0], settings, stream)
            return run.run()
        from neural_style.batch_run import stylize_photos  # alone or BATCH_SIZE at a time

        results, failures = stylize_photos(pipeline, photos, prefix_for)
    finally:  # however the run ends, its last plot is finished, not cut off
        pipeline.finish_plot()
    print(f"stylised {len(results)} of {len(photos)} photos", file=stream)
    for photo, why in failures:
        print(f"  failed: {photo}: {why}", file=stream)
    if not results:
        raise UserError(
            f"{settings.content_image}: none of the {len(photos)} photos could be "
            "stylised (see above)"
        )
    return BatchResult(results, failures)


def _describe(run: PhotoRun, photo: str, settings: Settings, stream: TextIO) -> None:
    height, width = run.photo.shape[:2]
    sizes = ", ".join(f"{stage.size[1]}x{stage.size[0]}" for stage in run.stages)
    print(
        f"content {photo} {width}x{height}, style {', '.join(settings.style_image)}, "
        f"output {sizes}, {settings.optimizer}",
        file=stream,
    )
