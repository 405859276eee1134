#!/usr/bin/env bash
# The deployment package, exactly as `sam build --beta-features` makes it: the arm64
# Rust target is added when missing, SAM's Rust build runs cargo-lambda (which
# cross-compiles with Zig), and the result is checked: .aws-sam/build/WarmerFunction/bootstrap
# must be an aarch64 ELF executable. `sam deploy` then uploads it. Run by `make package`,
# which installs the SAM CLI into .venv/sam and cargo-lambda into .venv first.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
sam=.venv/sam/bin/sam
target=aarch64-unknown-linux-gnu

if ! rustup target list --installed | grep -qx "$target"; then
  echo "Adding the Rust target $target"
  rustup target add "$target"
fi

# SAM_CLI_TELEMETRY=0: no usage reports from a build.
SAM_CLI_TELEMETRY=0 "$sam" build --beta-features "$@"

bootstrap=.aws-sam/build/WarmerFunction/bootstrap
python3 - "$bootstrap" <<'PY'
import os, struct, sys

path = sys.argv[1]
if not os.path.isfile(path):
    sys.exit(f"package: {path} was not built")
with open(path, "rb") as f:
    header = f.read(64)
if header[:4] != b"\x7fELF":
    sys.exit(f"package: {path} is not an ELF file")
if header[4] != 2 or header[5] != 1:
    sys.exit(f"package: {path} is not a 64-bit little-endian ELF file")
e_type, e_machine = struct.unpack_from("<HH", header, 16)
(e_entry,) = struct.unpack_from("<Q", header, 24)
EM_AARCH64, ET_EXEC, ET_DYN = 183, 2, 3
if e_machine != EM_AARCH64:
    sys.exit(f"package: {path} is for ELF machine {e_machine}, not aarch64 ({EM_AARCH64})")
if e_type not in (ET_EXEC, ET_DYN) or e_entry == 0 or not os.access(path, os.X_OK):
    sys.exit(f"package: {path} is not an executable (ELF type {e_type})")
size = os.path.getsize(path)
print(f"package: {path}: aarch64 ELF executable, {size / 1e6:.1f} MB ({size} bytes)")
PY
