#!/usr/bin/env bash
# Builds the Debian package: the release binary, the man page and completions made
# from the command-line definition, the unit, and the commented example configuration
# as a conffile. Prints the path of the .deb. Needs cargo-deb (`cargo install cargo-deb`).
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release --locked -q
assets=target/assets
rm -rf "$assets" && mkdir -p "$assets"
target/release/snaprotd assets "$assets"
gzip -9n "$assets/snaprotd.1"
# The packaged configuration: the example with its [[policy]] tables commented out,
# so nothing acts on a server before the operator says which.
awk '/^\[\[policy\]\]/ { p = 1 } { if (p && $0 != "" && $0 !~ /^#/) print "# " $0; else print }' \
    config/snaprotd.toml > "$assets/snaprotd.toml"
gzip -9n -c packaging/changelog > "$assets/changelog.Debian.gz"
cargo deb --no-build --locked -q >/dev/null
ls -1t target/debian/snaprotd_*.deb | head -n1
