#!/bin/sh
# Make sure the host has what `make run` / `make test` need, installing Debian
# packages with apt-get where they are missing and we are root.
#   host-deps.sh build   -> python3 venv support, a C compiler, Python headers
#   host-deps.sh test    -> mosquitto (integration tests), systemd-analyze (unit checks), openssl (test PKI),
#                           dosfstools + mtools + fdisk (SD image provisioning), fusefat (a FAT driver
#                           in FUSE: the card-wipe test), libfuse2 + fuse (the power-cut filesystem on
#                           mfusepy, and fusermount), shellcheck (image recipe),
#                           postgresql (the server: the ingest tests run their own cluster, tests/pg.py),
#                           nats-server (JetStream and MQTT 3.1.1: the ingest past one broker, a cluster of three),
#                           chromium (headless: the status page as a technician's browser shows it)
# Without root, a missing piece is reported and the caller decides what to do.
set -eu

PY=${PYTHON:-python3}
missing=""

need_pkg() { missing="$missing $1"; }

case "${1:-build}" in
build)
    if ! $PY -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
        echo "host-deps: $PY is missing or older than 3.11" >&2
        exit 1
    fi
    $PY -c 'import venv, ensurepip' 2>/dev/null || need_pkg python3-venv
    command -v cc >/dev/null 2>&1 || need_pkg gcc
    inc=$($PY -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
    [ -f "$inc/Python.h" ] || need_pkg python3-dev
    ;;
test)
    command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || need_pkg mosquitto
    # Debian's server binaries live in /usr/lib/postgresql/VERSION/bin, off PATH
    ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || command -v pg_ctl >/dev/null 2>&1 || need_pkg postgresql
    command -v nats-server >/dev/null 2>&1 || [ -x /usr/sbin/nats-server ] || need_pkg nats-server
    command -v systemd-analyze >/dev/null 2>&1 || need_pkg systemd
    command -v openssl >/dev/null 2>&1 || need_pkg openssl
    command -v mkfs.fat >/dev/null 2>&1 || [ -x /usr/sbin/mkfs.fat ] || need_pkg dosfstools
    command -v mcopy >/dev/null 2>&1 || need_pkg mtools
    command -v sfdisk >/dev/null 2>&1 || [ -x /usr/sbin/sfdisk ] || need_pkg fdisk
    command -v shellcheck >/dev/null 2>&1 || need_pkg shellcheck
    command -v fusefat >/dev/null 2>&1 || need_pkg fusefat
    # mfusepy loads libfuse.so.2 (or libfuse3.so.3); fuse3 would replace fuse's fusermount
    { ldconfig -p || /sbin/ldconfig -p; } 2>/dev/null | grep -q 'libfuse\.so\.2\|libfuse3\.so\.3' || need_pkg libfuse2
    command -v fusermount >/dev/null 2>&1 || command -v fusermount3 >/dev/null 2>&1 || need_pkg fuse
    # the status page is opened in a real browser (tests/integration/test_status_browser.py)
    command -v chromium >/dev/null 2>&1 || need_pkg chromium
    ;;
*)
    echo "usage: $0 build|test" >&2
    exit 64
    ;;
esac

[ -z "$missing" ] && exit 0

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "host-deps: installing$missing with apt-get" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    # shellcheck disable=SC2086
    apt-get install -y -qq --no-install-recommends $missing >&2
    if [ "$1" = test ]; then
        # Debian starts the packaged broker on 1883; the tests start their own.
        systemctl disable --now mosquitto >/dev/null 2>&1 || true
        # and its PostgreSQL cluster on 5432: the tests make their own in a temporary folder
        systemctl disable --now postgresql >/dev/null 2>&1 || true
        # and its NATS server on 4222: the NATS test starts a cluster of its own
        systemctl disable --now nats-server >/dev/null 2>&1 || true
    fi
    exit 0
fi
echo "host-deps: missing$missing (not root, or no apt-get): install them to go further" >&2
[ "$1" = test ] && exit 0   # those tests then skip loudly, or fail under EDGE_AGENT_REQUIRE_BROKER=1
exit 1
