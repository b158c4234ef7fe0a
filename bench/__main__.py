"""Run the benchmarks; end with one summary line per figure. `--only P1,P2` runs a subset."""

from __future__ import annotations

import argparse
import importlib
import os
import platform

FIGURES = {
    "P1": "bench.p1_cold",
    "P2": "bench.p2_cached",
    "P3": "bench.p3_gateway",
    "P3C": "bench.p3c_edge",
    "P3W": "bench.p3w_workers",
    "P4": "bench.p4_issuance",
    "P6": "bench.p6_propagation",
    "P7": "bench.p7_signedurl",
    "P8": "bench.p8_monitoring",
    "P9": "bench.p9_pqc",
    "DPOP": "bench.p_dpop",
    "MTLS": "bench.p_mtls",
    "CAEP": "bench.p_caep",
    "SCHEMA": "bench.p_schema",
    "PAR": "bench.p_par",
    "P10": "bench.p10_risk",
}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("--only", default="", help="comma-separated figure names, e.g. P1,P2")
    args = parser.parse_args()
    wanted = [name.strip().upper() for name in args.only.split(",") if name.strip()] or list(
        FIGURES
    )
    unknown = [name for name in wanted if name not in FIGURES]
    if unknown:
        parser.error(f"unknown figures {unknown}; known: {', '.join(FIGURES)}")
    print(
        f"tokenward bench on {platform.python_implementation()} {platform.python_version()}, "
        f"{os.cpu_count()} cores"
    )
    lines: list[str] = []
    for name in wanted:
        print(f"{name}:")
        module = importlib.import_module(FIGURES[name])
        lines.extend(figure.line() for figure in module.run())
    print()
    for line in lines:
        print(line)


if __name__ == "__main__":
    main()
