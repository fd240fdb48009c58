#!/usr/bin/env bash
# Debian's prometheus package: the server and promtool the monitoring
# tests run (promtool checks and unit-tests the alert rules; the e2e suite
# scrapes kpoguard with a real server). Installed once; `make tools` and
# .ci/run call this.
set -euo pipefail
if command -v prometheus >/dev/null && command -v promtool >/dev/null; then
  exit 0
fi
sudo=""
[ "$(id -u)" -eq 0 ] || sudo=sudo
install() { $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends prometheus; }
# The package lists may be stale or missing on a fresh machine.
install || { $sudo apt-get update && install; }
# The package may start a prometheus service (where policy-rc.d lets it):
# the tests start their own, on loopback ports of their choosing.
if command -v systemctl >/dev/null && systemctl is-active --quiet prometheus 2>/dev/null; then
  $sudo systemctl disable --now prometheus
elif command -v service >/dev/null && service prometheus status >/dev/null 2>&1; then
  $sudo service prometheus stop
fi
