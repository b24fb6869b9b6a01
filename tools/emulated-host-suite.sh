#!/bin/sh
# The test suite inside the emulated host (tools/emulated-host.sh without a command): the
# tests that need what the build machines lack, hardware KVM and a pure cgroup-v2 hierarchy.
# Reads the test executables from /run/isobox-l1/tests ("NAME PATH" lines, written by the
# host from `cargo test --no-run`), runs the selected ones one after another, and prints a
# summary; a skipped test is counted as skipped, not passed. Exits non-zero if any failed.
# A run that finds suite.log from an earlier L1 (the host restarted a frozen one) resumes:
# what that log reports is counted and not run again, nor are the tests of the executable that
# was running which passed before the freeze.
set -u
list=/run/isobox-l1/tests
log=/run/isobox-l1/suite.log
touch "$log"

# What runs here, and why: the microVM end to end on the built-in VMM (and `auto`, which must
# pick it), the VMM's real-kernel boot, and the container backend on this cgroup layout.
want() {
    case "$1" in
    e2e_qemu | microvm | microvm_parity | microvm_exec | vmm_linux | vmm_tiny_guest) return 0 ;;
    container | bad_input | escapes | policy | leaks | conformance | lifecycle) return 0 ;;
    isobox_container) return 0 ;; # the crate's unit tests include the cgroup host tests
    *) return 1 ;;
    esac
}

passed=0 failed=0 skipped=0 failed_names= flaky=0 flaky_names= resumed=
# Counts of an earlier L1's runs: "suite: NAME HV P passed F failed S skipped T s".
eval "$(awk '$1 == "suite:" && $5 == "passed" {p += $4; f += $6; s += $8; if ($6 > 0) n = n " " $2 "(" $3 ")"}
    END {printf "passed=%d failed=%d skipped=%d failed_names=\"%s\"\n", p, f, s, n}' "$log")"
# A test that was running when an earlier L1 froze is run once more; a test that froze L1
# twice is counted failed and not run again. Each line: "NAME HV TEST".
froze=/run/isobox-l1/froze
touch "$froze"
# "pass|fail|open TEST" for each test in libtest's output FILE: open is the one that was
# running when the output ended. A test that printed a skip at once has its "ok" on a line
# of its own.
outcomes() {
    awk '{sub(/\r$/, "")}
        /^test [^ ]* \.\.\. / {
            if (t != "") print "open", t
            t = $2; r = substr($0, length("test " t " ... ") + 1)
            if (r ~ /(^| )ok$/) {print "pass", t; t = ""}
            else if (r ~ /FAILED$/) {print "fail", t; t = ""}
            else if (r ~ /^ignored/) t = ""
            next
        }
        t != "" && /^ok$/ {print "pass", t; t = ""}
        t != "" && /^FAILED$/ {print "fail", t; t = ""}
        END {if (t != "") print "open", t}' "$1"
}
run_one() {
    name=$1 exe=$2 hv=$3
    shift 3 # the rest: libtest filters
    if awk -v n="$name" -v h="$hv" '$1 == "suite:" && $2 == n && $3 == h {found = 1} END {exit !found}' "$log"; then
        echo "suite: $name ($hv) ran in the earlier L1; counted from its log"
        return
    fi
    # On the run directory, so the host can follow a test while it runs.
    out=/run/isobox-l1/suite-$name-$hv.out
    # What an earlier L1 got through before it froze: its tests are not run again.
    part=/run/isobox-l1/suite-$name-$hv.part
    skips= lost=0
    if [ -f "$out" ]; then
        cat "$out" >>"$part"
        last=$(outcomes "$out" | awk '$1 == "open" {print $2}')
        if [ -n "$last" ]; then
            echo "$name $hv $last" >>"$froze"
            echo "suite: $name ($hv): L1 froze or the run timed out during $last; the rest runs again" | tee -a "$log"
        fi
    fi
    if [ -f "$part" ]; then
        # Passed or failed before the freeze: counted from there, not run again.
        for t in $(outcomes "$part" | awk '$1 != "open" {print $2}'); do skips="$skips --skip $t"; done
        lost=$(outcomes "$part" | grep -c '^fail ')
        for t in $(awk -v n="$name" -v h="$hv" '$1 == n && $2 == h {c[$3]++} END {for (t in c) if (c[t] > 1) print t}' "$froze"); do
            echo "suite: $name ($hv): $t froze L1 twice; counted failed" | tee -a "$log"
            skips="$skips --skip $t" lost=$((lost + 1))
        done
    fi
    echo "$name $hv" >/run/isobox-l1/running
    start=$(date +%s)
    # One test at a time: L1 has two vCPUs and every microVM boot is emulated twice over.
    # The host built everything; a test executable that hangs is ended and counted failed.
    # --exact: a --skip names one test, not every test whose name contains it.
    # shellcheck disable=SC2086
    ISOBOX_TEST_HYPERVISOR=$hv ISOBOX_TEST_PREBUILT=1 CI=true \
        timeout -k 10 "${SUITE_TIMEOUT:-900}" "$exe" --test-threads=1 ${skips:+--exact $skips} "$@" >"$out" 2>&1
    status=$?
    end=$(date +%s)
    # Ended by the timeout inside a test: resumed once, as after a freeze (the hung test runs
    # once more, the finished ones are counted from this output, the rest run).
    if { [ "$status" -eq 124 ] || [ "$status" -eq 137 ]; } && [ -z "$resumed" ] &&
        outcomes "$out" | grep -q '^open '; then
        resumed=1
        run_one "$name" "$exe" "$hv" "$@"
        resumed=
        return
    fi
    p=$(sed -n 's/^test result: [a-zA-Z]*\. \([0-9]*\) passed.*/\1/p' "$out" | tail -1)
    f=$(sed -n 's/^test result: .* \([0-9]*\) failed.*/\1/p' "$out" | tail -1)
    # At a line's start, or after libtest's "test NAME ... " when the test printed it at once.
    s=$(cat "$part" "$out" 2>/dev/null | grep -cE '(^|\.\.\. )skipped: ')
    # The container lifecycle tests have their own harness: "N passed, M failed, K skipped".
    [ -z "$p" ] && p=$(sed -n 's/^\([0-9]*\) passed, [0-9]* failed.*/\1/p' "$out" | tail -1)
    [ -z "$f" ] && f=$(sed -n 's/^[0-9]* passed, \([0-9]*\) failed.*/\1/p' "$out" | tail -1)
    # An executable ended by the timeout prints no result line: count the tests it finished.
    [ -z "$p" ] && p=$(outcomes "$out" | grep -c '^pass ')
    [ -z "$f" ] && f=$(outcomes "$out" | grep -c '^fail ')
    p=${p:-0} f=${f:-0}
    if [ "$status" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi
    # A test that failed runs once more, alone. One that then passes is counted passed and
    # reported as flaky with its first failure: in L1 an interrupt or IPI is sometimes lost
    # (see README), and the summary must still show it. Failing twice is failing.
    # Only after a run that ended by itself: a hung one's failure is the hang.
    retry=
    grep -q '^test result: ' "$out" && retry=$(outcomes "$out" | awk '$1 == "fail" {print $2}')
    for t in $retry; do
        again=/run/isobox-l1/suite-$name-$hv.again
        ISOBOX_TEST_HYPERVISOR=$hv ISOBOX_TEST_PREBUILT=1 CI=true \
            timeout -k 10 "${SUITE_TIMEOUT:-900}" "$exe" --test-threads=1 --exact "$t" >"$again" 2>&1
        if [ $? -eq 0 ] && outcomes "$again" | grep -qx "pass $t"; then
            f=$((f - 1)) p=$((p + 1)) flaky=$((flaky + 1)) flaky_names="$flaky_names $name($hv):$t"
            echo "suite: $name ($hv): $t failed, then passed alone: flaky here; its first failure:" | tee -a "$log"
            awk -v t="$t" '$0 == "---- " t " stdout ----" {on = 1; next} on && /^(---- |failures:$)/ {exit} on && NF' "$out" |
                head -12 | sed 's/^/suite:     /' | tee -a "$log"
        else
            echo "suite: $name ($hv): $t failed again alone" | tee -a "$log"
        fi
    done
    # The tests an earlier L1 passed, and those that froze L1 twice.
    [ -f "$part" ] && p=$((p + $(outcomes "$part" | grep -c '^pass ')))
    f=$((f + lost))
    # A skip prints "skipped: ..." and returns early, so libtest counted it as passed.
    p=$((p - s))
    [ "$p" -lt 0 ] && p=0
    passed=$((passed + p)) failed=$((failed + f)) skipped=$((skipped + s))
    printf 'suite: %-18s %-8s %3d passed %3d failed %3d skipped %5d s\n' \
        "$name" "$hv" "$p" "$f" "$s" $((end - start)) | tee -a "$log"
    if [ "$f" -ne 0 ]; then
        failed_names="$failed_names $name($hv)"
        grep -E '^(---- |thread .* panicked|test .* FAILED)' "$out" | head -20 | tee -a "$log"
        tail -40 "$out" >>"$log"
    fi
    cat "$part" "$out" 2>/dev/null | grep -oE '(^|\.\.\. )skipped: .*' | sed 's/^\.\.\. //; s/^/suite:   /' | tee -a "$log"
}

# `emulated-host.sh --only NAME`: those executables alone.
only=$(sed -n 's/^only=//p' /run/isobox-l1/config)
while read -r name exe; do
    want "$name" || continue
    [ -z "$only" ] || case " $only " in *" $name "*) ;; *) continue ;; esac
    case "$name" in
    e2e_qemu)
        # Every test on the built-in VMM; on `auto` the one that checks it picks the built-in
        # VMM; on qemu with KVM the workload's round trip and its wall time (the rest of qemu's
        # path runs under TCG on the build host already).
        run_one "$name" "$exe" builtin
        run_one "$name" "$exe" auto workload_output_hostname_kernel_env_cwd_stdin_and_exit_code
        run_one "$name" "$exe" qemu workload_output_hostname_kernel_env_cwd_stdin_and_exit_code \
            true_end_to_end_wall_time
        ;;
    *) run_one "$name" "$exe" default ;;
    esac
done <"$list"

echo "suite: total $passed passed, $failed failed, $skipped skipped, $flaky flaky" | tee -a "$log"
[ -n "$flaky_names" ] && echo "suite: flaky (failed once, passed alone):$flaky_names" | tee -a "$log"
[ -n "$failed_names" ] && echo "suite: failed:$failed_names" | tee -a "$log"
[ "$failed" -eq 0 ]
