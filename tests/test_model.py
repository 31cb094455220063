"""The protocol model-checked with Spin (model/paystore.pml and model/refunds.pml, run by
model/check.sh).

The correct models must verify; each broken variant (no lock, the original two-keys bug, a
session-level lock behind a transaction pooler; refunds without their lock or without the clash
check) must produce a counterexample. Two more tests weaken a variant into the correct protocol
and show that check.sh then fails: the negative controls themselves can fail.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.processes import ROOT

CHECK = ROOT / "model" / "check.sh"
MODEL = ROOT / "model" / "paystore.pml"
REFUNDS_MODEL = ROOT / "model" / "refunds.pml"
VARIANTS = ("NO_LOCK", "TWO_KEYS", "SESSION_LOCK_POOLED")
REFUND_VARIANTS = ("NO_REFUND_LOCK", "NO_CLASH_CHECK", "STRICT_ASK")

pytestmark = [
    pytest.mark.no_db,
    pytest.mark.skipif(
        shutil.which("spin") is None or shutil.which("gcc") is None,
        reason="Spin and gcc are not installed (scripts/install-system-deps.sh installs them; CI does)",
    ),
    # The verifier's own time on a machine shared with other work; nothing here is timed.
    pytest.mark.timeout(900),
]


def _check(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CHECK), "-k", str(tmp_path)],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=False,
    )


def _errors(output: str, run: str) -> int:
    found = re.search(rf"^model: {re.escape(run)}\s+errors (\d+)\s+states stored \S+", output, re.M)
    assert found, f"no result line for {run} in:\n{output}"
    return int(found.group(1))


def test_correct_model_verifies_and_every_broken_variant_has_a_counterexample(tmp_path: Path) -> None:
    result = _check(tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert _errors(output, "correct/safety") == 0
    assert _errors(output, "correct/liveness") == 0
    # Checkout and webhooks alone on two keys: the recovery path still closes the original race.
    assert _errors(output, "TWO_KEYS/webhooks-only") == 0
    for variant in VARIANTS:
        assert _errors(output, variant) >= 1, output
        assert f"model: {variant}: counterexample, as expected" in output
        assert (tmp_path / variant / "paystore.pml.trail").stat().st_size > 0
    # TWO_KEYS loses a payment that was answered 2xx: a webhook's committed effect is overwritten.
    assert re.search(r"model: TWO_KEYS: counterexample.*assertion violated \(\(pay\[0\]>=acked\[0\]\)", output)
    assert _errors(output, "refunds/safety") == 0
    for variant in REFUND_VARIANTS:
        assert _errors(output, f"refunds/{variant}") >= 1, output
        assert f"model: refunds/{variant}: counterexample, as expected" in output
        assert (tmp_path / f"refunds-{variant}" / "refunds.pml.trail").stat().st_size > 0
    # Without the refund lock two requests together ask Stripe for more than is left.
    assert re.search(r"model: refunds/NO_REFUND_LOCK: counterexample.*assertion violated \(\(asked_total<=4\)", output)
    # Without the clash check the index refuses refund.failed for good: paystore never learns it.
    assert re.search(r"model: refunds/NO_CLASH_CHECK: counterexample.*assertion violated \(\(kst\[0\]==sst\[0\]\)", output)


def _check_of_a_weakened_copy(tmp_path: Path, model: Path, broken: str, correct: str, file_var: str, run: str) -> str:
    """check.sh over a copy of `model` whose broken variant is the correct protocol after all: it
    must fail, saying the variant verified clean. Its output."""
    source = model.read_text()
    assert broken in source
    weakened = tmp_path / "weakened.pml"
    weakened.write_text(source.replace(broken, correct))
    result = _check(tmp_path / "runs", **{file_var: str(weakened)}, MODEL_RUNS=run)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert _errors(output, run) == 0
    assert f"model: {run}: FAILED, the broken variant verified clean (negative control)" in output
    return output


def test_check_fails_when_a_broken_variant_verifies_clean(tmp_path: Path) -> None:
    """A TWO_KEYS whose webhook takes the right key is the correct protocol: no trail, so check.sh fails."""
    _check_of_a_weakened_copy(tmp_path, MODEL, "#define WEBHOOK_KEY(p) SKEY(p)", "#define WEBHOOK_KEY(p) PKEY(p)",
                              "MODEL_FILE", "TWO_KEYS")


def test_check_fails_when_a_broken_refunds_variant_verifies_clean(tmp_path: Path) -> None:
    """A NO_REFUND_LOCK whose requests take the refund lock after all is the correct protocol."""
    _check_of_a_weakened_copy(tmp_path, REFUNDS_MODEL, "#if !defined(NO_REFUND_LOCK)\n\tLOCK(RKEY, busy);",
                              "#if 1\n\tLOCK(RKEY, busy);", "MODEL_REFUNDS_FILE", "refunds/NO_REFUND_LOCK")
