"""The limits a run plans its memory under: the free memory, every cgroup limit over the
process (v1 and v2, nested), and the address-space limit (ulimit -v), each read from a fake
/proc and /sys/fs/cgroup built in tmp_path; and a real train.py under a small ulimit -v."""

from __future__ import annotations

import os
import resource
import subprocess
import sys

import pytest

from neural_style.errors import UserError
from neural_style.optimize import memory
from tests.support import REPO_ROOT

GIB = memory.GIB
V1_UNLIMITED = 9223372036854771712  # what cgroup v1 writes for "no limit"


def _write(path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


@pytest.fixture
def machine(tmp_path):
    """A fake /proc (16 GiB free, in the root cgroup v2) and an empty /sys/fs/cgroup."""
    proc, cgroup = tmp_path / "proc", tmp_path / "cgroup"
    _write(proc / "meminfo", f"MemTotal: {32 * 1024**2} kB\nMemAvailable: {16 * 1024**2} kB\n")
    _write(proc / "self" / "cgroup", "0::/\n")
    _write(proc / "self" / "status", f"Name:\tpython\nVmSize:\t{1024**2} kB\nVmRSS:\t1 kB\n")
    cgroup.mkdir()
    return proc, cgroup


def _budget(machine, address_limit: int = -1) -> memory.MemoryBudget:
    proc, cgroup = machine
    return memory.memory_budget(str(proc), str(cgroup), address_limit=address_limit)


def test_without_limits_the_free_memory_is_the_budget(machine):
    budget = _budget(machine)
    assert budget.bytes == 16 * GIB
    assert budget.source == "the free memory"


def test_a_cgroup_v2_limit_less_its_usage_is_the_budget(machine):
    _, cgroup = machine
    _write(cgroup / "memory.max", f"{2 * GIB}\n")
    _write(cgroup / "memory.current", f"{GIB // 2}\n")
    budget = _budget(machine)
    assert budget.bytes == 2 * GIB - GIB // 2
    assert budget.source.startswith("the cgroup limit of 2.0 GiB (")
    assert budget.source.endswith("memory.max)")


def test_max_means_no_cgroup_limit(machine):
    _, cgroup = machine
    _write(cgroup / "memory.max", "max\n")
    _write(cgroup / "memory.current", f"{GIB}\n")
    assert _budget(machine).source == "the free memory"


def test_a_nested_cgroup_v2_counts_every_ancestors_limit(machine):
    proc, cgroup = machine
    _write(proc / "self" / "cgroup", "0::/outer/inner\n")
    # The outer cgroup's limit is the tightest once its other members' usage is counted.
    _write(cgroup / "outer" / "memory.max", f"{3 * GIB}\n")
    _write(cgroup / "outer" / "memory.current", f"{2 * GIB}\n")
    _write(cgroup / "outer" / "inner" / "memory.max", f"{2 * GIB}\n")
    _write(cgroup / "outer" / "inner" / "memory.current", f"{GIB // 4}\n")
    budget = _budget(machine)
    assert budget.bytes == GIB
    assert str(cgroup / "outer" / "memory.max") in budget.source
    assert "3.0 GiB" in budget.source
    # The inner limit is tighter once the outer one is lifted.
    _write(cgroup / "outer" / "memory.max", "max\n")
    budget = _budget(machine)
    assert budget.bytes == 2 * GIB - GIB // 4
    assert str(cgroup / "outer" / "inner" / "memory.max") in budget.source


def test_a_cgroup_v2_shown_at_the_mount_root_is_read_there(machine):
    # In a container's cgroup namespace the mount's root is the process's own cgroup,
    # whatever path /proc/self/cgroup names (here one that the mount does not show).
    proc, cgroup = machine
    _write(proc / "self" / "cgroup", "0::/docker/0123abcd\n")
    _write(cgroup / "memory.max", f"{GIB}\n")
    _write(cgroup / "memory.current", "0\n")
    assert _budget(machine).bytes == GIB


def test_a_cgroup_path_that_climbs_out_of_the_mount_is_not_followed(machine, tmp_path):
    proc, _ = machine
    _write(proc / "self" / "cgroup", "0::/../elsewhere\n")
    _write(tmp_path / "elsewhere" / "memory.max", f"{GIB}\n")
    assert _budget(machine).source == "the free memory"


def test_a_cgroup_v1_limit_is_read_at_the_process_path_or_at_the_mount_root(machine):
    proc, cgroup = machine
    _write(proc / "self" / "cgroup", "12:cpu,cpuacct:/docker/abc\n4:memory:/docker/abc\n")
    own = cgroup / "memory" / "docker" / "abc"
    _write(own / "memory.limit_in_bytes", f"{2 * GIB}\n")
    _write(own / "memory.usage_in_bytes", f"{GIB}\n")
    _write(cgroup / "memory" / "memory.limit_in_bytes", f"{V1_UNLIMITED}\n")
    budget = _budget(machine)
    assert budget.bytes == GIB
    assert budget.source.startswith("the cgroup limit of 2.0 GiB (")
    assert str(own / "memory.limit_in_bytes") in budget.source
    # A container that shows its own cgroup at the mount's root.
    for name in ("memory.limit_in_bytes", "memory.usage_in_bytes"):
        (own / name).unlink()
    _write(cgroup / "memory" / "memory.limit_in_bytes", f"{3 * GIB}\n")
    _write(cgroup / "memory" / "memory.usage_in_bytes", f"{GIB}\n")
    assert _budget(machine).bytes == 2 * GIB


def test_cgroup_v1_without_a_limit_leaves_the_free_memory(machine):
    proc, cgroup = machine
    _write(proc / "self" / "cgroup", "4:memory:/\n")
    _write(cgroup / "memory" / "memory.limit_in_bytes", f"{V1_UNLIMITED}\n")
    _write(cgroup / "memory" / "memory.usage_in_bytes", f"{GIB}\n")
    assert _budget(machine).source == "the free memory"


def test_missing_and_garbage_files_are_no_limit_or_no_usage(machine):
    proc, cgroup = machine
    _write(proc / "self" / "cgroup", "nonsense\n\n0:memory\n0::/a\n")
    _write(cgroup / "a" / "memory.max", "lots\n")  # garbage: no limit read
    _write(cgroup / "memory.max", f"{4 * GIB}\n")
    _write(cgroup / "memory.current", "\x00\x01garbage")  # a limit with no usage counts whole
    budget = _budget(machine)
    assert budget.bytes == 4 * GIB
    assert str(cgroup / "memory.max") in budget.source
    (proc / "meminfo").write_text("MemTotal: 1 kB\n")  # no MemAvailable
    assert _budget(machine).bytes == 4 * GIB
    (proc / "self" / "cgroup").unlink()
    budget = _budget(machine)
    assert budget.bytes >= 1 << 60 and budget.source == "no known limit"


def test_the_address_space_limit_counts_less_what_the_process_has_mapped(machine):
    budget = _budget(machine, address_limit=3 * GIB)
    # VmSize in the fake status is 1 GiB.
    assert budget.bytes == 2 * GIB - memory.ADDRESS_SPACE_RESERVE
    assert budget.source == "the address-space limit (ulimit -v) of 3.0 GiB"
    assert "ulimit -v" in budget.fix
    # A limit far above the free memory leaves the free memory the tightest.
    assert _budget(machine, address_limit=64 * GIB).source == "the free memory"


def test_this_process_reads_its_own_address_space_limit():
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    own = memory.address_space_budget()
    if soft == resource.RLIM_INFINITY:
        assert own is None
    else:
        assert own is not None and own.bytes < soft


def test_a_refusal_names_the_limit_that_set_the_budget(machine):
    _, cgroup = machine
    _write(cgroup / "memory.max", f"{2 * GIB}\n")
    _write(cgroup / "memory.current", f"{GIB // 2}\n")
    with pytest.raises(UserError) as caught:
        memory.plan_step((3072, 4096), "float32", available=_budget(machine))
    message = str(caught.value)
    assert "\n" not in message
    assert "but 1.5 GiB is left under the cgroup limit of 2.0 GiB (" in message
    assert "the largest that fits is" in message
    assert "or raise that limit" in message
    with pytest.raises(UserError) as caught:
        memory.plan_step((3072, 4096), "float32", available=_budget(machine, 2 * GIB))
    message = str(caught.value)
    assert "left under the address-space limit (ulimit -v) of 2.0 GiB" in message
    assert "raise it (ulimit -v unlimited)" in message
    with pytest.raises(UserError, match=r"tiles of 4096 pixels .* left under the cgroup limit"):
        memory.plan_step((3072, 8192), "float32", available=_budget(machine), tile_size=4096)
    with pytest.raises(UserError, match=r"a batch of 2 images .* left under the cgroup limit"):
        memory.plan_step((1536, 2048), "float32", available=_budget(machine), batch=2)


# An address-space limit under which TensorFlow starts (its address space was 1.4 GiB when a
# tiny run planned, and 1.6 GiB was too little for it to start its threads) and a small
# image would fit, but not a 12000-pixel wide one.
ULIMIT_V = 3 * GIB


def _limit_address_space(limit: int):
    def preexec() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    return preexec


def _train_py_under(limit: int, tmp_path, tiny_mat, image_pair, *flags: str):
    """A real train.py under an address-space limit of `limit` bytes: the finished process
    and the output prefix it was given."""
    content, style = image_pair
    output = tmp_path / "out" / "result"
    command = [
        sys.executable,
        os.path.join(REPO_ROOT, "train.py"),
        f"--content_image={content}",
        f"--style_image={style}",
        f"--output_image={output}",
        f"--vgg_model_path={tiny_mat}",
        "--train_steps=2",
        *flags,
    ]
    done = subprocess.run(
        command,
        cwd=REPO_ROOT,
        env={**os.environ, "CUDA_VISIBLE_DEVICES": ""},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        preexec_fn=_limit_address_space(limit),
    )
    return done, output


@pytest.mark.slow
def test_train_py_under_ulimit_v_refuses_an_image_too_large_in_one_line(
    tmp_path, tiny_mat, image_pair
):
    flags = ("--image_width=12000", "--precision=float32")
    done, output = _train_py_under(ULIMIT_V, tmp_path, tiny_mat, image_pair, *flags)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: IMAGE_WIDTH (--image_width): a 12000x")
    assert "left under the address-space limit (ulimit -v) of" in lines[0]
    assert not output.parent.exists() or not any(output.parent.iterdir())


def test_an_address_space_limit_too_small_for_tensorflow_is_refused_before_it_starts():
    from neural_style import runtime

    need = runtime.tensorflow_start_bytes()
    assert need >= runtime.TENSORFLOW_START_BYTES
    runtime.check_address_space(resource.RLIM_INFINITY)
    runtime.check_address_space(need)
    with pytest.raises(UserError) as refused:
        runtime.check_address_space(need - (1 << 20))
    message = str(refused.value)
    assert "\n" not in message
    assert message.startswith("the address-space limit (ulimit -v) of ")
    assert f"at least ulimit -v {need // 1024}" in message


@pytest.mark.slow
def test_train_py_under_a_ulimit_v_tensorflow_cannot_start_in_is_one_line(
    tmp_path, tiny_mat, image_pair
):
    """Below what TensorFlow needs to start, it would crash with a segmentation fault or
    an ImportError traceback; the run says so before it loads, and writes nothing."""
    done, output = _train_py_under(3 << 29, tmp_path, tiny_mat, image_pair)  # 1.5 GiB
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: the address-space limit (ulimit -v) of 1.5 GiB is below")
    assert not output.parent.exists() or not any(output.parent.iterdir())
