"""Two ways to take w2's tr((Σ'^½ Σ Σ'^½)^½) and its gradient, timed and checked on the
matrices a run at --width meets.

    python benchmarks/matrix_root.py                 # 512 px, then 128 px for accuracy

w2 (neural_style/losses/style/w2.py) takes the trace of the root from a float64
eigendecomposition, with the gradient ½ A^-½ from the same (trace_of_root). The other way
is a Newton–Schulz root (coupled iteration, float32, --iterations of them) for the value,
with the gradient from the Lyapunov equation A^½ X + X A^½ = G solved by the Newton
iteration of the matrix sign function, instead of differentiating through the iterations.
This script builds, at each of the shipped style layers, the product Σ'^½ (Σ + εI) Σ'^½
of the shipped start image (photo and half noise) and images/style.jpg at --width, exactly
as w2 does; times the value and gradient of both ways over the five layers (alternated,
median of --repeats); and prints each way's largest relative error in value and gradient
against numpy's float64 eigh, at --width and at --small_width, where the deep layers have
fewer positions than channels. Without the real weights the synthetic ones are used.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)

from benchmarks.machine import cpu_name  # noqa: E402
from benchmarks.style_loss import _problem  # noqa: E402


def products(width: int) -> list:
    """The [1, c, c] float64 products Σ'^½ (Σ + εI) Σ'^½ at the shipped style layers."""
    import tensorflow as tf

    import settings as shipped
    from neural_style.gatys.pipeline import initial_image
    from neural_style.losses.style import w2

    net, content, style, _ = _problem(width)
    layers = [name for name, _ in shipped.STYLE_LOSS_LAYERS]
    start = net.features(initial_image(content, 0.5, 0)[None], layers)
    styled = net.features(style[None], layers)
    found = []
    for name in layers:
        mean, covariance = w2.moments(tf.cast(styled[name], tf.float64))
        root = w2.blended_target([(mean[0].numpy(), covariance[0].numpy())], [1.0])
        style_root = tf.cast(root[:, 1:], tf.float64)
        _, covariance = w2.moments(tf.cast(start[name], tf.float64))
        covariance += w2.COVARIANCE_EPSILON * tf.eye(covariance.shape[1], dtype=tf.float64)
        product = style_root @ covariance @ style_root
        found.append(0.5 * (product + tf.linalg.matrix_transpose(product)))
    return found


def newton_schulz_lyapunov(iterations: int):
    """tr(A^½) of [B, c, c] float32 matrices by a coupled Newton–Schulz root, its gradient
    X (A^½ X + X A^½ = upstream · I) by the sign iteration of [[R, G], [0, -R]]."""
    import tensorflow as tf

    @tf.custom_gradient
    def trace_of_root(matrix):
        scale = tf.norm(matrix, axis=[-2, -1])[:, None, None]
        identity = tf.eye(tf.shape(matrix)[-1], batch_shape=[tf.shape(matrix)[0]])
        root, inverse = matrix / scale, identity
        for _ in range(iterations):
            factor = 0.5 * (3.0 * identity - inverse @ root)
            root, inverse = root @ factor, factor @ inverse
        value = tf.linalg.trace(root) * tf.sqrt(scale[:, 0, 0])

        def gradient(upstream):
            normed, carried = root, upstream[:, None, None] * identity
            for _ in range(iterations):
                square = normed @ normed
                sandwich = normed @ carried @ normed
                carried = 0.5 * (-square @ carried + sandwich + carried @ (3.0 * identity - square))
                normed = 0.5 * normed @ (3.0 * identity - square)
            # sign's corner is 2X̂ for the root of A / scale; X = X̂ / √scale.
            return 0.5 * carried / tf.sqrt(scale)

        return value, gradient

    return trace_of_root


def value_and_gradient(function, matrix, dtype):
    import tensorflow as tf

    matrix = tf.cast(matrix, dtype)
    with tf.GradientTape() as tape:
        tape.watch(matrix)
        value = tf.reduce_sum(function(matrix))
    return value, tape.gradient(value, matrix)


def reference(matrix):
    """numpy float64: tr(A^½) and ½ A^-½."""
    import numpy as np

    values, vectors = np.linalg.eigh(np.asarray(matrix[0], np.float64))
    roots = np.sqrt(np.clip(values, 1e-300, None))
    return roots.sum(), (vectors * (0.5 / roots)) @ vectors.T, values


def ways(iterations: int) -> dict:
    import tensorflow as tf

    from neural_style.losses.style.w2 import trace_of_root

    newton = newton_schulz_lyapunov(iterations)
    return {
        "eigh float64": (trace_of_root, tf.float64),
        f"Newton–Schulz + Lyapunov float32, {iterations} it.": (newton, tf.float32),
    }


def errors(found: list, chosen: dict) -> dict:
    """Each way's largest relative error of value and of gradient over the layers, and the
    layers' condition numbers."""
    import numpy as np

    worst = {name: [0.0, 0.0] for name in chosen}
    conditions = []
    for matrix in found:
        value, gradient, eigenvalues = reference(matrix.numpy())
        conditions.append(eigenvalues.max() / eigenvalues.min())
        for name, (function, dtype) in chosen.items():
            got, got_gradient = value_and_gradient(function, matrix, dtype)
            got_gradient = np.asarray(got_gradient[0], np.float64)
            value_error = abs(float(got) - value) / abs(value)
            gradient_error = np.linalg.norm(got_gradient - gradient) / np.linalg.norm(gradient)
            worst[name][0] = max(worst[name][0], value_error)
            worst[name][1] = max(worst[name][1], float(gradient_error))
    return {"worst": worst, "conditions": conditions}


def _all_layers(function, dtype):
    """Value and gradient of every layer's matrix, `function` held in a closure: passed as a
    default argument, tf.function would unwrap its custom gradient."""

    def step(*matrices):
        return [value_and_gradient(function, matrix, dtype) for matrix in matrices]

    return step


def timings(found: list, chosen: dict, repeats: int) -> dict:
    """Median seconds of value and gradient over all the layers, each way traced once."""
    import tensorflow as tf

    compiled = {}
    for name, (function, dtype) in chosen.items():
        inputs = [tf.cast(matrix, dtype) for matrix in found]
        step = tf.function(_all_layers(function, dtype), autograph=False)
        step(*inputs)  # trace
        compiled[name] = (step, inputs)
    seconds = {name: [] for name in chosen}
    for _ in range(repeats):
        for name, (step, inputs) in compiled.items():
            began = time.perf_counter()
            for _, gradient in step(*inputs):
                gradient.numpy()
            seconds[name].append(time.perf_counter() - began)
    return {name: statistics.median(values) for name, values in seconds.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--small_width", type=int, default=128)
    parser.add_argument("--iterations", type=int, default=12)
    parser.add_argument("--repeats", type=int, default=20)
    arguments = parser.parse_args()
    os.chdir(REPO_ROOT)
    print(f"CPU: {cpu_name()} ({os.cpu_count()} logical CPUs)")
    chosen = ways(arguments.iterations)
    found = products(arguments.width)
    shapes = ", ".join(str(matrix.shape[-1]) for matrix in found)
    print(f"{arguments.width} px: the five style layers' products, channels {shapes}")
    seconds = timings(found, chosen, arguments.repeats)
    print("| way | s per step (5 layers) | largest rel. error value / gradient", end="")
    print(f" at {arguments.width} px | at {arguments.small_width} px |")
    print("| --- | --- | --- | --- |")
    large = errors(found, chosen)
    small = errors(products(arguments.small_width), chosen)
    for name in chosen:
        at = [f"{e[name][0]:.1e} / {e[name][1]:.1e}" for e in (large["worst"], small["worst"])]
        print(f"| {name} | {seconds[name]:.4f} | {at[0]} | {at[1]} |")
    for width, result in ((arguments.width, large), (arguments.small_width, small)):
        conditions = ", ".join(f"{c:.3g}" for c in result["conditions"])
        print(f"condition numbers at {width} px: {conditions}")


if __name__ == "__main__":
    main()
