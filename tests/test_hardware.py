"""collect_compute_metadata with faked environments: SLURM, CUDA_VISIBLE_DEVICES, cgroups, no torch."""

from ups.utils.hardware import collect_compute_metadata, parse_slurm_count, summary_line


def cgroup_v2(tmp_path, memory="8589934592", cpu="400000 100000"):
    root = tmp_path / "cg"
    root.mkdir()
    (root / "memory.max").write_text(memory + "\n")
    (root / "cpu.max").write_text(cpu + "\n")
    return root


def test_cgroup_v2_limits_win_over_the_host(tmp_path):
    meta = collect_compute_metadata(env={}, cgroup_root=cgroup_v2(tmp_path), torch_module=None)
    assert meta["memory.gb"] == 8.59 and meta["memory.source"] == "cgroup"
    assert meta["cpu.count"] == 4 and meta["cpu.source"] == "cgroup"


def test_cgroup_v1_limits(tmp_path):
    root = tmp_path / "v1"
    (root / "memory").mkdir(parents=True)
    (root / "cpu").mkdir()
    (root / "memory" / "memory.limit_in_bytes").write_text("4000000000")
    (root / "cpu" / "cpu.cfs_quota_us").write_text("200000")
    (root / "cpu" / "cpu.cfs_period_us").write_text("100000")
    meta = collect_compute_metadata(env={}, cgroup_root=root, torch_module=None)
    assert meta["memory.gb"] == 4.0 and meta["cpu.count"] == 2


def test_slurm_allocation_and_formats(tmp_path):
    env = {
        "SLURM_JOB_ID": "4242",
        "SLURM_CPUS_ON_NODE": "16(x2)",
        "SLURM_MEM_PER_NODE": "96G",
        "SLURM_GPUS_ON_NODE": "4",
        "SLURM_JOB_PARTITION": "gpu",
    }
    meta = collect_compute_metadata(env=env, cgroup_root=tmp_path / "none", torch_module=None)
    assert meta["cpu.count"] == 16 and meta["cpu.source"] == "slurm"
    assert meta["gpu.count"] == 4 and meta["gpu.source"] == "slurm"
    assert meta["memory.gb"] == round(96 * 1024**3 / 1e9, 2) and meta["memory.source"] == "slurm_per_node"
    assert meta["slurm.job_id"] == "4242" and meta["slurm.job_partition"] == "gpu"
    per_cpu = collect_compute_metadata(
        env={"SLURM_CPUS_PER_TASK": "4", "SLURM_MEM_PER_CPU": "2048"}, cgroup_root=tmp_path / "none", torch_module=None
    )
    assert per_cpu["cpu.count"] == 4 and per_cpu["memory.gb"] == round(4 * 2048 * 1024**2 / 1e9, 2)
    assert parse_slurm_count("8,4(x2)") == 8 and parse_slurm_count("junk") is None


def test_cuda_visible_devices_counts_gpus(tmp_path):
    meta = collect_compute_metadata(env={"CUDA_VISIBLE_DEVICES": "0,2,3"}, cgroup_root=tmp_path, torch_module=None)
    assert meta["gpu.count"] == 3 and meta["gpu.source"] == "CUDA_VISIBLE_DEVICES"
    none = collect_compute_metadata(env={"CUDA_VISIBLE_DEVICES": ""}, cgroup_root=tmp_path, torch_module=None)
    assert none["gpu.count"] == 0


class FakeTorch:
    """Just enough of torch.cuda to describe four GPUs."""

    __version__ = "fake"

    class cuda:
        @staticmethod
        def is_available():
            return True

        @staticmethod
        def device_count():
            return 4

        @staticmethod
        def get_device_properties(i):
            class P:
                name, total_memory, major, minor, multi_processor_count = "NVIDIA RTX A6000", 51e9, 8, 6, 84

            return P


def test_gpu_details_from_torch_and_summary_line(tmp_path):
    env = {"SLURM_CPUS_PER_TASK": "8", "SLURM_MEM_PER_NODE": "122550"}
    meta = collect_compute_metadata(env=env, cgroup_root=tmp_path, torch_module=FakeTorch)
    assert meta["gpu.count"] == 4 and meta["gpu.3.compute_capability"] == "8.6" and meta["gpu.0.sm_count"] == 84
    assert summary_line(meta) == "8 CPUs, 4 GPUs (NVIDIA RTX A6000), 128.5 GB"


def test_missing_torch_vast_vars_and_no_secrets(tmp_path):
    env = {
        "CONTAINER_ID": "123",
        "CONTAINER_API_KEY": "sekret-container-key",
        "VAST_CONTAINERLABEL": "C.123",
        "GPU_COUNT": "2",
        "WANDB_API_KEY": "sekret-wandb",
        "VL_LAUNCH_ID": "L9",
    }
    meta = collect_compute_metadata({"model": {"name": "fno", "width": 64}}, env=env, cgroup_root=tmp_path, torch_module=None)
    assert meta["vast.container_id"] == "123" and meta["vast.gpu_count"] == "2" and meta["launch.launch_id"] == "L9"
    assert meta["runtime.torch"] is None and meta["model.width"] == 64
    assert "sekret" not in repr(meta) and not any("key" in k.lower() for k in meta)


def test_never_raises_on_garbage(tmp_path):
    root = cgroup_v2(tmp_path, memory="garbage", cpu="also garbage")
    meta = collect_compute_metadata(
        env={"SLURM_CPUS_PER_TASK": "x", "SLURM_MEM_PER_NODE": "lots"}, cgroup_root=root, torch_module=object()
    )
    assert meta["cpu.count"] and "memory.gb" in meta
