"""Test-session settings shared by tests/ and the packages' doctests."""

import os
import shutil
import sys
import warnings

import pytest
import torch

# Tests train many tiny models; on two shared cores extra intra-op threads only add
# synchronisation stalls (measured 20x slower under load), so use one.
torch.set_num_threads(1)


def _why_no_testbed() -> str | None:
    """Why a real testbed cannot be made here (None when it can): tried once, for real, as
    root in a container may still lack the rights or the qdiscs."""
    if sys.platform != "linux" or not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "a real testbed needs Linux and root"
    if shutil.which("ip") is None or shutil.which("tc") is None:
        return "a real testbed needs iproute2 (ip, tc)"
    import tempfile

    import topologies
    from real.testbed import TestbedError, down, make_plan, up

    name = f"p{os.getpid() % 10**6}"
    with tempfile.TemporaryDirectory() as state:
        before = os.environ.get("COMMSIM_TESTBED_STATE")
        os.environ["COMMSIM_TESTBED_STATE"] = state
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                up(make_plan(topologies.star(2), name))
            down(name)
        except TestbedError as exc:
            return f"cannot make a testbed here: {exc}"
        finally:
            if before is None:
                del os.environ["COMMSIM_TESTBED_STATE"]
            else:
                os.environ["COMMSIM_TESTBED_STATE"] = before
    return None


@pytest.fixture(scope="session")
def testbed_rights() -> None:
    """Skip, with the reason, unless a real emulated testbed can be made on this machine."""
    reason = _why_no_testbed()
    if reason is not None:
        pytest.skip(reason)


# Importing it registers the calibration probe as a strategy, which only rank command lines
# should do (`python -m real --import studies.calibration.named`): keep doctests out of it.
collect_ignore = ["studies/calibration/named.py"]
