"""Write mutation/REPORT.md from the results of the last ``mutmut run``.

Usage (``nox -s mutants`` runs it): ``python mutation/report.py --seconds N``. Reads the
results with ``mutmut results --all true``, the diff of each survivor with ``mutmut show``,
and the survivors judged equivalent (with the reason) from mutation/equivalent.json.
Exits 1 when a module's score, equivalents excluded, is below ``--floor``.
"""

from __future__ import annotations

import argparse
import collections
import datetime as dt
import json
import pathlib
import subprocess
import sys
from importlib import metadata

HERE = pathlib.Path(__file__).resolve().parent
KILLED = {"killed", "timeout", "caught by type check"}
NOT_RUN = {"skipped", "not checked"}


def mutmut(*args: str) -> str:
    """The output of one mutmut command, run in the project root."""
    return subprocess.run(
        [sys.executable, "-m", "mutmut", *args],
        cwd=HERE.parent,
        check=True,
        capture_output=True,
        text=True,
    ).stdout


def parse_results(text: str) -> dict[str, str]:
    """Mutant name -> status, from ``mutmut results --all true``."""
    statuses: dict[str, str] = {}
    for line in text.splitlines():
        name, sep, status = line.strip().rpartition(": ")
        if sep and name:
            statuses[name] = status
    return statuses


def module_of(mutant: str) -> str:
    """``tupu_async._retry.x_parse__mutmut_3`` -> ``tupu_async._retry``."""
    return mutant.split(".x", 1)[0]


def render(
    statuses: dict[str, str],
    diffs: dict[str, str],
    equivalent: dict[str, str],
    seconds: float | None,
) -> str:
    by_module: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for name, status in statuses.items():
        by_module[module_of(name)][status] += 1
    when = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    took = f", {seconds / 60:.1f} min" if seconds is not None else ""
    lines = [
        "# Mutation testing report",
        "",
        f"`nox -s mutants`: mutmut {metadata.version('mutmut')}, {when}{took}. Score = killed /",
        "(mutants run - survivors judged equivalent); timeouts count as killed.",
        "",
        "| module | mutants | killed | survived | equivalent | no tests | other | score |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    totals: collections.Counter[str] = collections.Counter()
    for module in sorted(by_module):
        counts = by_module[module]
        survivors = [n for n, s in statuses.items() if module_of(n) == module and s == "survived"]
        row = _row(counts, sum(1 for n in survivors if n in equivalent))
        if not row["mutants"]:
            continue  # not part of this run (``mutmut run NAME...``)
        totals.update(row)
        lines.append(_format_row(f"`{module}`", row))
    lines.append(_format_row("**all**", totals))
    lines += ["", "## Surviving mutants", ""]
    survivors = sorted(n for n, s in statuses.items() if s == "survived")
    if not survivors:
        lines.append("None.")
    for name in survivors:
        verdict = f"equivalent: {equivalent[name]}" if name in equivalent else "**not yet killed**"
        lines += [f"### `{name}`", "", verdict, "", "```diff", diffs[name].strip(), "```", ""]
    others = sorted(n for n, s in statuses.items() if s not in KILLED | NOT_RUN | {"survived"})
    if others:
        lines += ["## Not killed for another reason", ""]
        lines += [f"- `{n}`: {statuses[n]}" for n in others]
        lines.append("")
    return "\n".join(lines)


def _row(counts: collections.Counter[str], equivalent: int) -> collections.Counter[str]:
    run = sum(v for k, v in counts.items() if k not in NOT_RUN)
    killed = sum(counts[k] for k in KILLED)
    return collections.Counter(
        {
            "mutants": run,
            "killed": killed,
            "survived": counts["survived"],
            "equivalent": equivalent,
            "no tests": counts["no tests"],
            "other": run - killed - counts["survived"] - counts["no tests"],
        }
    )


def score(row: collections.Counter[str]) -> float:
    """Percent killed of the mutants that could be killed."""
    killable = row["mutants"] - row["equivalent"]
    return 100.0 if killable <= 0 else 100.0 * row["killed"] / killable


def _format_row(label: str, row: collections.Counter[str]) -> str:
    cells = [str(row[k]) for k in ("mutants", "killed", "survived", "equivalent", "no tests")]
    return f"| {label} | {' | '.join(cells)} | {row['other']} | {score(row):.1f}% |"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, help="how long the mutmut run took")
    parser.add_argument("--floor", type=float, default=0.0, help="minimum score per module, %%")
    args = parser.parse_args(argv)
    statuses = parse_results(mutmut("results", "--all", "true"))
    if not statuses:
        print("no mutmut results: run `mutmut run` first", file=sys.stderr)
        return 2
    equivalent: dict[str, str] = json.loads((HERE / "equivalent.json").read_text())
    diffs = {n: mutmut("show", n) for n, s in statuses.items() if s == "survived"}
    (HERE / "REPORT.md").write_text(render(statuses, diffs, equivalent, args.seconds))
    low = []
    for module in sorted({module_of(n) for n in statuses}):
        counts = collections.Counter(s for n, s in statuses.items() if module_of(n) == module)
        survivors = {n for n, s in statuses.items() if module_of(n) == module and s == "survived"}
        row = _row(counts, len(survivors & equivalent.keys()))
        if not row["mutants"]:
            continue
        print(f"{module:32} {score(row):5.1f}%  ({row['survived']} survived)")
        if score(row) < args.floor:
            low.append(module)
    print(f"wrote {HERE / 'REPORT.md'}")
    if low:
        print(f"below the {args.floor:g}% floor: {', '.join(low)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
