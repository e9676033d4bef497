# Sourced by scripts/test.sh and scripts/test-long.sh: named stages that
# print their time, and the closing "N passed, N failed" line.
stages_passed=0
stages_failed=0
stages_failures=()

# stage NAME COMMAND...: runs one stage, records whether it passed
stage() {
    local name=$1
    shift
    echo
    echo "== $name =="
    local start=$SECONDS
    if "$@"; then
        stages_passed=$((stages_passed + 1))
        echo "== $name: passed in $((SECONDS - start)) s =="
    else
        stages_failed=$((stages_failed + 1))
        stages_failures+=("$name")
        echo "== $name: FAILED after $((SECONDS - start)) s =="
    fi
}

# stages_summary PROGRAM: prints the failures and the summary line; the
# exit status says whether every stage passed
stages_summary() {
    echo
    local f
    for f in "${stages_failures[@]}"; do echo "  failed: $f"; done
    echo "$1: $stages_passed passed, $stages_failed failed"
    [ "$stages_failed" -eq 0 ]
}

# configure_build DIR: the warnings-as-errors release build the stages test
configure_build() {
    if [ ! -f "$1/build.ninja" ]; then
        meson setup "$1" --buildtype=release -Dwerror=true || return 1
    fi
    ninja -C "$1"
}
