"""Run one cocotb suite under Verilator from pytest (cocotb 2.x runner)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from bnc.sim import verilator


def run_suite(
    top: str,
    module: str,
    build_dir: Path,
    parameters: dict[str, object] | None = None,
    sources: list[Path] | None = None,
    test_dir: Path | None = None,
    run_dir: Path | None = None,
    defines: dict[str, object] | None = None,
) -> None:
    """Build ``top`` with ``parameters`` and run the cocotb test module ``module`` on it.

    The simulation runs in ``run_dir`` (default: the test's folder; a generated design runs
    in its artifact folder, where its ROM files are). Fails (raises) when any cocotb test
    fails."""
    os.environ.update(verilator.env())
    from cocotb_tools.runner import get_results, get_runner

    runner = get_runner("verilator")
    here = test_dir or Path(__file__).resolve().parent
    runner.build(
        sources=sources or verilator.hw_sources(),
        hdl_toplevel=top,
        parameters=parameters or {},
        defines=defines or {},
        build_dir=build_dir,
        build_args=["-Wno-fatal"],
        always=True,
        log_file=build_dir / "build.log",
    )
    sys.path.insert(0, str(here))  # the runner hands the simulator sys.path as PYTHONPATH
    try:
        results = runner.test(
            hdl_toplevel=top,
            test_module=module,
            test_dir=run_dir or here,
            build_dir=build_dir,
            extra_env={"PYTHONPATH": f"{here}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"},
            log_file=build_dir / "test.log",
            results_xml=str(build_dir / "results.xml"),  # not next to the test module
        )
    finally:
        sys.path.remove(str(here))
    tests, fails = get_results(results)
    assert tests > 0, f"{module}: no cocotb test ran (see {build_dir / 'test.log'})"
    assert fails == 0, f"{module}: {fails} of {tests} cocotb tests failed (see {build_dir})"
