"""The commands as a user runs them: a subprocess from another directory."""

import os
import subprocess
import sys


def cli(*args, cwd):
    env = dict(os.environ, WANDB_MODE="offline", PYTHONUNBUFFERED="1")
    return subprocess.run([sys.executable, "-m", "fod_lightning.run", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)  # fmt: skip
