"""List the runs under a results folder that did not complete (interrupted or unfinished), with the command
that resumes each. A run's real state comes from the lock its process holds (see ftbench/run_store.py).

    python run_status.py results            # list the runs that did not complete, and how to resume them
"""

from __future__ import annotations

import quiet_imports  # noqa: F401  (first: silences third-party start-up lines)

import argparse
import os
import sys

from ftbench.run_store import resumable_runs, resume_hint, where_it_stopped


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description="List the interrupted and unfinished runs under a results folder, "
                                                 "with the command that resumes each.")
    parser.add_argument("output_dir", nargs="?", default="results", help="The results folder (default: results).")
    output_dir = parser.parse_args(argv).output_dir
    if not os.path.isdir(output_dir):
        print(f"error: {output_dir} is not a folder; give the results folder (default 'results')", file=sys.stderr)
        return 2
    runs = resumable_runs(output_dir)
    if not runs:
        print(f"no interrupted or unfinished runs under {os.path.join(output_dir, 'runs')}")
    for run_dir, results, status in runs:
        info = results["run_info"]
        print(f"{status}: {info.get('run_id')} ({info.get('method_label')}, {info.get('dataset')}), "
              f"{where_it_stopped(results)}; resume: {resume_hint(run_dir, info)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
