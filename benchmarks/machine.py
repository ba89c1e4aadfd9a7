"""What every benchmark prints about the machine it ran on."""
import platform
import subprocess


def cpu_model():
    """The CPU's model name (lscpu), else platform.processor(), else "unknown"."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"
