#!/usr/bin/env bash
# Dependency hygiene with cargo-deny (deny.toml): allowed licenses only, crates.io as the
# only source (no other registry, no git), duplicate versions reported as warnings.
# Advisories are not checked here (that needs the advisory database from the network).
# Installs cargo-deny from crates.io when it is missing (a one-time build of a few minutes).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo-deny >/dev/null 2>&1; then
  echo "deny: cargo-deny not found; installing it (cargo install --locked cargo-deny --version 0.20.2)"
  cargo install --locked cargo-deny --version 0.20.2
fi
cargo deny --version
cargo deny --locked check licenses bans sources
