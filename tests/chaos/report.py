"""Rows and the summary line: what a chaos run prints on stdout."""

import sys
from dataclasses import dataclass

PASS, FAIL, SKIP = "PASS", "FAIL", "SKIP"
COLUMNS = (("scenario", 26), ("fault", 44), ("recover", 8), ("invariants", 30), ("result", 6))


@dataclass
class Row:
    scenario: str
    fault: str
    result: str = PASS
    recover: str = "-"           # seconds from heal to a whole cluster, or "-"
    invariants: str = "-"        # what was checked, e.g. "6 x 57 polls"
    detail: str = ""             # why it failed or was skipped, extra facts

    def line(self):
        cells = [self.scenario, self.fault, self.recover, self.invariants, self.result]
        text = "  ".join(str(c).ljust(w) for c, (_, w) in zip(cells, COLUMNS)).rstrip()
        if self.detail:
            text += f"  {self.detail}"
        return text


def header():
    return "  ".join(name.ljust(w) for name, w in COLUMNS).rstrip()


def emit(row):
    print(row.line(), flush=True)
    return row


def summary(rows):
    passed = sum(r.result == PASS for r in rows)
    failed = sum(r.result == FAIL for r in rows)
    skipped = sum(r.result == SKIP for r in rows)
    return f"{passed} passed, {failed} failed, {skipped} skipped"


def note(text):
    """A comment line on stdout (timings, legends); never the last line."""
    print(f"# {text}", flush=True)
    sys.stdout.flush()
