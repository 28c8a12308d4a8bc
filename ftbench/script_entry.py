"""The entry point of every train_<method>.py script.

--help is answered from the options alone (config.py), before the training loop imports torch, peft and
the Trainer: that takes about 1 s where a full start-up takes 7 to 9 s on a 2-core CPU. Everything else goes
to ftbench.runner.run, which parses the same options again, once the Hub has been found reachable or the run set
offline (ftbench/hub_offline.py).
"""

import quiet_imports  # first: silences third-party start-up lines

import os
import sys

from ftbench.hub_offline import go_offline_if_hub_unreachable


def main(method: str) -> None:
    """Run the method's script with this process's command line; exits with run()'s status."""
    argv, prog = sys.argv[1:], os.path.basename(sys.argv[0])
    if "-h" in argv or "--help" in argv:
        from config import parse_args
        from ftbench.errors import ConfigError

        try:
            parse_args(method, argv, prog)  # argparse prints the help and exits 0
        except ConfigError:
            pass  # e.g. an unreadable --config: run() below reports it in its usual one line
    go_offline_if_hub_unreachable()  # before the runner loads the Hub's libraries
    from ftbench.runner import run

    sys.exit(run(method, argv, prog, quiet_imports.IMPORTED_AT))
