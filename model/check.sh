#!/usr/bin/env bash
# Model-check paystore's protocol (model/paystore.pml) and the refunds the shop starts
# (model/refunds.pml) with Spin; see model/README.md.
#
# The correct models must verify with 0 errors, for safety (assertions, deadlocks) and, for
# paystore.pml, liveness (the LTL claim under weak fairness). Each broken variant must produce a
# counterexample trail: one that verifies clean means the model can no longer tell the broken
# protocol from the right one, and fails this script as surely as an error in a correct model.
#
# Usage: model/check.sh [-k DIR]   (-k: keep pan, its sources and the trails in DIR)
# Environment: MODEL_FAULTS  crashes and lock timeouts allowed per run (default 1)
#              MODEL_RUNS    which runs, space-separated (default: all of
#                            "correct/safety correct/liveness NO_LOCK TWO_KEYS SESSION_LOCK_POOLED
#                            TWO_KEYS/webhooks-only refunds/safety refunds/NO_REFUND_LOCK
#                            refunds/NO_CLASH_CHECK refunds/STRICT_ASK")
#              MODEL_FILE    the Promela file of the runs not named refunds/* (default
#                            model/paystore.pml; tests check this script against a deliberately
#                            weakened copy)
#              MODEL_REFUNDS_FILE  the Promela file of the refunds/* runs (default model/refunds.pml)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
faults=${MODEL_FAULTS:-1}
runs=${MODEL_RUNS:-correct/safety correct/liveness NO_LOCK TWO_KEYS SESSION_LOCK_POOLED TWO_KEYS/webhooks-only \
refunds/safety refunds/NO_REFUND_LOCK refunds/NO_CLASH_CHECK refunds/STRICT_ASK}
model=${MODEL_FILE:-$here/paystore.pml}
refunds_model=${MODEL_REFUNDS_FILE:-$here/refunds.pml}
keep=""
if [ "${1:-}" = "-k" ]; then keep=${2:?"-k needs a directory"}; fi

for tool in spin gcc; do
	command -v "$tool" >/dev/null || { echo "model: $tool is not installed (scripts/install-system-deps.sh)" >&2; exit 2; }
done

if [ -n "$keep" ]; then
	mkdir -p "$keep"
	work=$(cd "$keep" && pwd)
else
	work=$(mktemp -d "${TMPDIR:-/tmp}/paystore-model.XXXXXX")
	trap 'rm -rf "$work"' EXIT
fi

# Lossless state compression (-DCOLLAPSE) halves the memory of the correct model's runs on a
# shared machine; MEMLIM stops a run that would grow past 2 GB instead of swapping.
CFLAGS=(-O2 -w -DMEMLIM=2048 -DCOLLAPSE)
failures=0

# run NAME EXPECT PAN_FLAGS... : compile $file (copied as $pml) with $defines and $cflags, run pan
run() {
	local name=$1 expect=$2; shift 2
	local dir="$work/${name//\//-}"
	case " $runs " in *" $name "*) ;; *) return ;; esac
	mkdir -p "$dir"
	rm -f "$dir"/*.trail "$dir"/pan.out
	cp "$file" "$dir/$pml"
	(
		cd "$dir"
		spin -a -DFAULTS="$faults" $defines "$pml" >spin.out 2>&1 || { cat spin.out; exit 3; }
		gcc "${CFLAGS[@]}" $cflags -o pan pan.c
		./pan "$@" >pan.out 2>&1 || true
	) || { echo "model: $name: could not build the verifier" >&2; failures=$((failures + 1)); return; }
	local out="$dir/pan.out"
	local errors stored transitions seconds memory
	errors=$(sed -n 's/.*errors: \([0-9]*\).*/\1/p' "$out" | tail -1)
	stored=$(sed -n 's/^ *\([0-9.e+]*\) states, stored.*/\1/p' "$out" | tail -1)
	transitions=$(sed -n 's/^ *\([0-9.e+]*\) transitions.*/\1/p' "$out" | tail -1)
	seconds=$(sed -n 's/^pan: elapsed time \([0-9.e+]*\) seconds.*/\1/p' "$out" | tail -1)
	memory=$(sed -n 's/^ *\([0-9.]*\)\s*total actual memory usage.*/\1/p' "$out" | tail -1)
	printf 'model: %-28s errors %-3s states stored %-10s transitions %-10s time %6ss  memory %6s MB\n' \
		"$name" "${errors:-?}" "${stored:-?}" "${transitions:-?}" "${seconds:-?}" "${memory:-?}"
	if grep -qE "out of memory|reached -DMEMLIM bound|max search depth too small|Search not completed" "$out" && [ "$expect" = verifies ]; then
		echo "model: $name: the search did not cover the whole state space:" >&2
		grep -E "out of memory|reached -DMEMLIM bound|max search depth too small|Search not completed" "$out" >&2
		failures=$((failures + 1))
		return
	fi
	case "$expect" in
	verifies)
		if [ "${errors:-x}" != 0 ]; then
			echo "model: $name: FAILED, expected to verify, but Spin found a counterexample:" >&2
			grep -E "pan:|assertion|invalid end|acceptance" "$out" >&2 || cat "$out" >&2
			(cd "$dir" && spin -t -DFAULTS="$faults" $defines "$pml" | grep -E "MSC|assert" >&2) || true
			failures=$((failures + 1))
		fi
		;;
	counterexample)
		if [ "${errors:-0}" = 0 ] || [ ! -s "$dir/$pml.trail" ]; then
			echo "model: $name: FAILED, the broken variant verified clean (negative control)" >&2
			failures=$((failures + 1))
			return
		fi
		local replay steps
		replay=$(cd "$dir" && spin -t -DFAULTS="$faults" $defines "$pml" 2>&1)
		steps=$(sed -n 's/^spin: trail ends after \([0-9]*\) steps.*/\1/p' <<<"$replay")
		echo "model: $name: counterexample, as expected, a trail of ${steps:-?} steps:" \
			"$(grep -m1 -E "pan:[0-9]+:" "$out" | sed 's/^pan:[0-9]*: //; s/ (at depth.*//')"
		# the trail, told by the printf lines of the model (pids: see model/README.md)
		sed -n 's/^ *MSC: /model:     /p' <<<"$replay"
		;;
	esac
}

echo "model: Spin $(spin -V | sed -n 's/^Spin Version \([^ ]*\).*/\1/p'), FAULTS=$faults, pan built with ${CFLAGS[*]}"

file=$model pml=paystore.pml
defines="" cflags="-DSAFETY -DNOCLAIM"
run "correct/safety" verifies -m10000
defines="" cflags="-DNFAIR=3"
run "correct/liveness" verifies -m10000 -a -f
for variant in NO_LOCK TWO_KEYS SESSION_LOCK_POOLED; do
	defines="-D$variant" cflags="-DSAFETY -DNOCLAIM"
	if [ "$variant" != SESSION_LOCK_POOLED ]; then
		# -i: keep searching for ever shorter trails; with -DREACH the last one is the shortest
		cflags="$cflags -DREACH"
		run "$variant" counterexample -m10000 -c1 -i
	else
		run "$variant" counterexample -m10000 -c1
	fi
done
# The original race alone (webhook before checkout's commit, on another key) is closed by the
# recovery path: creation lock, primary key, 500 and redelivery. Only the processes that take
# the purchase key besides checkout (reconcile, the return page) break TWO_KEYS.
defines="-DTWO_KEYS -DWITHOUT_SNAPSHOTS" cflags="-DSAFETY -DNOCLAIM"
run "TWO_KEYS/webhooks-only" verifies -m10000

# The refunds the shop starts: two requests of one purchase, a refund that fails later, a second
# checkout of the same user and program. Safety (assertions, deadlocks, and the end-state checks
# that stand for liveness: every run of this model is finite) must verify; the variants without
# the refund lock or the clash check must not. STRICT_ASK is the ask invariant without its
# lost-answer exception: it must fail, showing the model still reaches a lost answer.
file=$refunds_model pml=refunds.pml
defines="" cflags="-DSAFETY -DNOCLAIM"
run "refunds/safety" verifies -m10000
for variant in NO_REFUND_LOCK NO_CLASH_CHECK STRICT_ASK; do
	defines="-D$variant" cflags="-DSAFETY -DNOCLAIM -DREACH"
	run "refunds/$variant" counterexample -m10000 -c1 -i
done

if [ "$failures" -ne 0 ]; then
	echo "model: $failures check(s) failed" >&2
	exit 1
fi
echo "model: OK: $runs"
