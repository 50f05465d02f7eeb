#!/usr/bin/env bash
# The test suite's set-up on a fresh Debian machine, then the command it is given:
#
#   scripts/testenv.sh COMMAND...
#
# 1. Every Debian package in PACKAGES below is checked with dpkg; missing ones are installed with apt-get when
#    this runs as root or with passwordless sudo. Otherwise it stops at once, naming the one apt-get line to run.
# 2. PostgreSQL must answer at TPMLINE_TEST_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/test).
#    When nothing answers it starts a server it owns: the machine's cluster with pg_ctlcluster (as root), or,
#    as any other user, a throw-away cluster made with initdb in a temporary folder on a free port. A server
#    this script started is stopped when COMMAND ends; one that was already running is left alone.
# 3. COMMAND runs with TPMLINE_TEST_DATABASE_URL exported; its exit status is this script's.
set -euo pipefail

# The packages the suite needs, one place: swtpm boards, tpm2-tools cross-checks, openssl, the TUI's tmux
# tests, pdftotext for the PDF tests, faketime for the moved-clock check of swtpm vendor material.
PACKAGES=(swtpm swtpm-tools tpm2-tools tpm2-openssl libssl-dev tmux poppler-utils openssl faketime softhsm2)

say() { echo "testenv: $*" >&2; }

missing=()
for pkg in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    as_root=()
  elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    as_root=(sudo -n)
  else
    say "missing Debian packages: ${missing[*]}"
    say "run: sudo apt-get install -y ${missing[*]}"
    exit 1
  fi
  say "installing ${missing[*]}"
  "${as_root[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${as_root[@]}" apt-get install -y -qq "${missing[@]}" >/dev/null
fi

url="${TPMLINE_TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test?sslmode=disable}"
hostport="${url#*://}"; hostport="${hostport#*@}"; hostport="${hostport%%/*}"; hostport="${hostport%%\?*}"
pghost="${hostport%%:*}"; pgport="${hostport##*:}"
[ "$pgport" = "$hostport" ] && pgport=5432

pg_answers() { pg_isready -h "$1" -p "$2" -q 2>/dev/null; }
wait_pg() { for _ in $(seq 1 60); do pg_answers "$1" "$2" && return 0; sleep 0.5; done; return 1; }

stop_cmd=()
cleanup() { if [ ${#stop_cmd[@]} -gt 0 ]; then say "stopping the PostgreSQL it started"; "${stop_cmd[@]}" >/dev/null 2>&1 || true; fi; }
trap cleanup EXIT

if ! command -v pg_isready >/dev/null 2>&1; then
  say "PostgreSQL's client tools are missing (pg_isready): install postgresql, or set TPMLINE_TEST_DATABASE_URL"
  exit 1
fi
if ! pg_answers "$pghost" "$pgport"; then
  cluster=""
  [ -d /etc/postgresql ] && cluster="$(ls /etc/postgresql | sort -V | tail -1)"
  if [ "$(id -u)" = 0 ] && [ -n "$cluster" ] && [ "$pgport" = 5432 ]; then
    say "starting PostgreSQL $cluster/main"
    pg_ctlcluster --skip-systemctl-redirect "$cluster" main start
    stop_cmd=(pg_ctlcluster --skip-systemctl-redirect "$cluster" main stop)
    wait_pg "$pghost" "$pgport" || { say "PostgreSQL $cluster/main did not answer on $pghost:$pgport"; exit 1; }
  else
    bindir=""
    for d in /usr/lib/postgresql/*/bin; do [ -x "$d/initdb" ] && bindir="$d"; done
    if [ -z "$bindir" ] || [ "$(id -u)" = 0 ]; then
      say "no PostgreSQL answers at $pghost:$pgport and none can be started here"
      say "run: sudo apt-get install -y postgresql, or set TPMLINE_TEST_DATABASE_URL"
      exit 1
    fi
    dir="$(mktemp -d "${TMPDIR:-/tmp}/tpmline-pg.XXXXXX")"
    pgport="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null || echo 55432)"
    say "starting a throw-away PostgreSQL in $dir on 127.0.0.1:$pgport"
    "$bindir/initdb" -D "$dir/data" -U postgres -A trust >/dev/null
    "$bindir/pg_ctl" -D "$dir/data" -l "$dir/log" -o "-h 127.0.0.1 -p $pgport -k $dir" -w start >/dev/null
    stop_cmd=(sh -c "'$bindir/pg_ctl' -D '$dir/data' -m fast -w stop; rm -rf '$dir'")
    "$bindir/createdb" -h 127.0.0.1 -p "$pgport" -U postgres test
    url="postgres://postgres@127.0.0.1:$pgport/test?sslmode=disable"
  fi
fi
export TPMLINE_TEST_DATABASE_URL="$url"

set +e
"$@"
rc=$?
set -e
exit $rc
