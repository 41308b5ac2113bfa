# common.sh: helpers of the shell tests (sourced): a temporary folder $T removed at exit, pass/fail counting, and
# predicates on exit codes and files. Sets T, n_pass, n_fail, n_skip, BG_PID, BIN and SHARED (defaults bin, ../shared),
# B (the tool folder, absolute) and POP (POP909); need_pop909 fails the test when POP909 is missing (never a skip).
T=$(mktemp -d) || exit 1
BG_PID= # the tool under a signal test, killed if the script stops early
cleanup() {
    [ -n "$BG_PID" ] && kill -KILL "$BG_PID" 2>/dev/null
    exec 3>&- 2>/dev/null
    rm -rf "$T"
}
trap cleanup EXIT

# ---- helpers ----------------------------------------------------------------------------------

n_pass=0
n_fail=0
n_skip=0
pass() { n_pass=$((n_pass + 1)); }
# skip N REASON: N checks that could not run here (a package that cannot be installed offline); never a pass
skip() {
    n_skip=$((n_skip + $1))
    printf 'SKIP: %d checks: %s\n' "$1" "$2"
}
# fail NAME [DETAIL...]: counts a failure and prints its name and details
fail() {
    n_fail=$((n_fail + 1))
    printf 'FAIL: %s\n' "$1"
    shift
    for d in "$@"; do printf '      %s\n' "$d"; done
}
summary() {
    printf '%d passed, %d failed, %d skipped\n' "$n_pass" "$n_fail" "$n_skip"
    [ "$n_fail" = 0 ]
    exit
}
# check NAME CMD...: passes when CMD exits 0
check() {
    local name=$1
    shift
    if "$@"; then pass; else fail "$name" "false: $*"; fi
}
# run CMD...: stdout -> $T/out, stderr -> $T/err, exit status -> $rc; stdin is the caller's
run() {
    "$@" >"$T/out" 2>"$T/err"
    rc=$?
}
# expect NAME STATUS CMD...: runs CMD as run does and passes when it exits with STATUS
expect() {
    local name=$1 want=$2
    shift 2
    run "$@"
    if [ "$rc" = "$want" ]; then pass; else fail "$name" "exit $rc, want $want: $*" "stderr: $(head -c 400 "$T/err")"; fi
}

# usage_case EXE ARGS...: EXE ARGS is a usage error: exit 2, nothing on stdout, one error line naming the tool
usage_case() {
    local exe=$1 t
    t=$(basename "$1")
    shift
    expect "$t $*: exits 2" 2 "$exe" "$@"
    check "$t $*: nothing on stdout" empty "$T/out"
    check "$t $*: one error line" usage_err "$T/err" "^$t: [a-z-]"
}
# same_run DIR1 DIR2: two train run folders hold the same model and trainer state (after the state's 1024-byte
# header, which holds the run id)
payload() { tail -c +1025 "$1"; }
same_run() { cmp -s "$1/model.safetensors" "$2/model.safetensors" && cmp -s <(payload "$1/trainer.state") <(payload "$2/trainer.state"); }
empty() { [ ! -s "$1" ]; }
nonempty() { [ -s "$1" ]; }
n_lines() { [ "$(wc -l <"$1")" -eq "$2" ]; }
same() { cmp -s "$1" "$2"; }
differ() { ! cmp -s "$1" "$2"; }
# no_files DIR: DIR is missing or holds nothing at all (no outputs, no temporaries)
no_files() { [ ! -e "$1" ] || [ -z "$(ls -A "$1")" ]; }
no_tmp() { [ -z "$(find "$1" -name '*.tmp.*' 2>/dev/null)" ]; }
# one_line FILE ERE: FILE is exactly one line and it matches ERE
one_line() { n_lines "$1" 1 && grep -Eq -- "$2" "$1"; }
# usage_err FILE ERE: a usage error: exactly one line, matching ERE once its " (try 'TOOL --help')" tail is cut
usage_err() {
    n_lines "$1" 1 || return 1
    grep -Eq " \(try '[a-z0-9]+ --help'\)$" "$1" || return 1
    sed -E "s/ \(try '[a-z0-9]+ --help'\)$//" "$1" | grep -Eq -- "$2"
}
# all_docs FILE: every line is NAME<TAB>TOKENS (at least one line)
all_docs() { nonempty "$1" && ! grep -Evq $'^[^\t]+\t[^\t]*$' "$1"; }
# dir_count DIR N: DIR holds exactly N entries
dir_count() { [ "$(ls -A "$1" | wc -l)" -eq "$2" ]; }

# deb_try CMD PACKAGE...: whether CMD is there, installing the Debian PACKAGEs first when it is missing (apt-get,
# sudo when not root, waiting up to 5 minutes for another apt-get's lock); the caller decides fail or skip.
deb_try() {
    local cmd=$1 sudo=
    shift
    command -v "$cmd" >/dev/null && return 0
    echo "installing Debian packages: $*" >&2
    [ "$(id -u)" = 0 ] || sudo=sudo
    { $sudo apt-get -o DPkg::Lock::Timeout=300 update -qq &&
        DEBIAN_FRONTEND=noninteractive $sudo apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends "$@"
    } >"$T/apt.log" 2>&1
    command -v "$cmd" >/dev/null
}

BIN=${BIN:-bin}
SHARED=${SHARED:-../shared}
POP=$SHARED/data/pop909
B=$(cd "$BIN" 2>/dev/null && pwd) || {
    fail "tool folder BIN='$BIN' exists"
    summary
}
need_pop909() {
    [ -d "$POP" ] || {
        fail "POP909 at '$POP' (set SHARED)"
        summary
    }
}
