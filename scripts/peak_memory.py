"""Peak resident memory of this process, per workload, for the PyTorch sides of `cargo xtask
bench` (scripts/torch_reference.py and scripts/bench_rollout_torch.py): reset the high-water
mark before a workload, read it after (Linux; elsewhere the peak is None)."""


def reset_peak():
    """Resets this process's peak resident set to its current one (Linux); False elsewhere."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_rss_bytes():
    """This process's peak resident set (VmHWM) in bytes, or None."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None
