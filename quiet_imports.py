"""Imported first by every entry point, before any third-party library: it silences the start-up lines that
libraries print on their own, so that a script's stderr holds only what the suite writes.

bitsandbytes is imported by peft whenever it is installed, and peft by transformers' Trainer, so every
script imports it, not only QLoRA's. On CPUs with AVX512-BF16 its import warns that an optional fused-kernel
package ('kernels') is missing. The suite never uses that kernel (train_qlora.py switches every 4-bit layer to
the generic path), and the warning comes from a logger that exists before bitsandbytes does, so its level is
set here, before the import; later would be too late.
"""

import logging
import time

logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)

# When the script began importing its libraries (this module comes first): the runner measures a run's wall
# time, start-up and imports included, from here (train_info.wall_time_s).
IMPORTED_AT = time.perf_counter()
