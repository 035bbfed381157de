"""PASS/FAIL bookkeeping, arguments and command running shared by the end-to-end scripts."""
import argparse
import os
import shutil
import subprocess


class Checks:
    """Counts checks, prints one line each, and ends with the 'N passed, M failed' line ctest logs."""

    def __init__(self):
        self.passed = self.failed = 0

    def __call__(self, label, ok, detail=""):
        ok = bool(ok)
        print(f"{'PASS' if ok else 'FAIL'} {label}" + (f": {detail}" if detail else ""), flush=True)
        self.passed, self.failed = self.passed + ok, self.failed + (not ok)

    def finish(self):
        print(f"{self.passed} passed, {self.failed} failed")
        return 1 if self.failed else 0


def run(cmd):
    """stdout of a command that must succeed; its stderr in the exception otherwise."""
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{result.stderr}")
    return result.stdout


def remora_and_fresh_work():
    """--remora BINARY and --work DIR (emptied first): what every ctest end-to-end script is given."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--remora", required=True)
    parser.add_argument("--work", required=True)
    args = parser.parse_args()
    shutil.rmtree(args.work, ignore_errors=True)
    os.makedirs(args.work)
    return args
