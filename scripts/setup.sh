#!/usr/bin/env bash
# Set up .venv for this checkout: create it if missing, install PyTorch, then the project itself as an
# editable install (code changes need no reinstall) with its dependencies (MONAI, SimpleITK, OpenVINO, ...).
#
# It installs only when needed: after a successful install it records, in .venv/.setup-stamp, a hash of
# pyproject.toml (the project's requirements), the PyTorch pin below and this checkout's path, plus the
# extras installed. A later call whose pyproject.toml, pin and path are unchanged, and whose extras were
# installed before, runs no pip at all: it takes well under a second and works without a network.
#
# Which PyTorch build: pip installs torch==$TORCH_VERSION from the indexes pip is configured with (pip's own
# configuration is respected: index-url, extra-index-url, find-links, constraints). From plain PyPI that is
# the CUDA build on Linux x86_64 (torch plus about 15 nvidia-* packages, several GB), the CPU build on
# macOS and Windows. Where a local mirror or find-links folder serves the CPU build (as on the project's CI
# machine), that one is installed. For the small CPU-only build on Linux, PyTorch's CPU wheel index:
#     CPU_ONLY=1 bash scripts/setup.sh     # same as TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
# This choice applies when PyTorch is installed, i.e. into a new .venv (rm -rf .venv first to switch).
#
# Variables: EXTRAS=test[,train] adds the optional dependencies; PYTHON picks the interpreter for a new
# .venv (default python3; 3.10 or later for the default PyTorch); TORCH_VERSION (default below, what CI
# tests); TORCH_INDEX_URL or CPU_ONLY=1 (above);
# SETUP_FORCE=1 runs pip even when the stamp says everything is installed.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
TORCH_VERSION=${TORCH_VERSION:-2.13.0}
if [ "${CPU_ONLY:-0}" = 1 ]; then
  TORCH_INDEX_URL=${TORCH_INDEX_URL:-https://download.pytorch.org/whl/cpu}
fi
TORCH_INDEX_URL=${TORCH_INDEX_URL:-}
VENV_PY=.venv/bin/python
STAMP=.venv/.setup-stamp
START=$SECONDS

say() { echo "setup: $*"; }
failed() {
  echo "setup: error: pip could not install $1 (its message is above); without a network pip installs" \
       "nothing. The next call tries again." >&2
  exit 1
}

# One interpreter start for the stamp: `state key` prints the stamp's key (a hash of pyproject.toml, the
# PyTorch pin and this checkout's path); `state check` prints "up-to-date" or the reason to install.
# Any Python 3, no third-party modules.
state() {
  "$VENV_PY" - "$1" "$STAMP" "$TORCH_VERSION" "${EXTRAS:-}" "$PWD" <<'PY'
import hashlib, importlib.util, sys
mode, stamp, torch_version, extras, root = sys.argv[1:]
with open("pyproject.toml", "rb") as f:
    key = hashlib.sha256(f.read() + ("\0torch==%s\0%s" % (torch_version, root)).encode()).hexdigest()
if mode == "key":
    print(key)
    sys.exit()
wanted = {e.strip().lower() for e in extras.split(",") if e.strip()}
try:
    with open(stamp) as f:
        fields = dict(line.rstrip("\n").split(" ", 1) for line in f if " " in line and not line.startswith("#"))
except OSError:
    fields = {}
installed = {e for e in fields.get("extras", "").split(",") if e}
missing = [m for m in ("torch", "AttentionUNetSegLib") if importlib.util.find_spec(m) is None]
if "key" not in fields:
    print("no completed set-up recorded in .venv yet")
elif fields["key"] != key:
    print("pyproject.toml (the requirements), the PyTorch pin or the checkout's path changed since the last set-up")
elif not wanted <= installed:
    print("extras [%s] not installed yet" % ",".join(sorted(wanted - installed)))
elif missing:
    print("%s no longer importable from .venv" % " and ".join(missing))
else:
    print("up-to-date")
PY
}

# pip install with compact output: errors and warnings (stderr) as pip writes them; of stdout only the
# downloads (with their sizes) and a summary, plus a live "collecting ..." line on a terminal. The stamp is
# removed when pip starts changing .venv: a pip that fails before (offline, say) leaves a working set-up
# recorded as it was.
pip_install() {
  "$VENV_PY" -m pip install --progress-bar off "$@" | {
    live=0
    while IFS= read -r line; do
      case "$line" in
        Collecting*|"Obtaining "*|"Processing "*)
          if [ -t 1 ]; then printf '\r\033[K  pip: %s' "${line:0:100}"; live=1; fi ;;
        *Downloading*)
          if [ "$live" = 1 ]; then printf '\r\033[K'; live=0; fi
          echo "  pip: ${line#"${line%%[![:space:]]*}"}" ;;
        "Installing collected packages:"*)
          if [ "$live" = 1 ]; then printf '\r\033[K'; live=0; fi
          rm -f "$STAMP"   # .venv changes from here on; the stamp is written again once everything succeeded
          echo "  pip: installing $(echo "${line#*:}" | tr ',' '\n' | grep -c .) package(s) ..." ;;
        "Successfully installed"*)
          echo "  pip: ${line:0:300}" ;;
      esac
    done
    if [ "$live" = 1 ]; then printf '\r\033[K'; fi
  }
}

if [ -x "$VENV_PY" ]; then
  if [ "${SETUP_FORCE:-0}" = 1 ]; then
    reason="SETUP_FORCE=1"
  else
    reason=$(state check)
    if [ "$reason" = up-to-date ]; then
      say ".venv is up to date (pyproject.toml unchanged since the last set-up); nothing to install"
      exit 0
    fi
  fi
  say "installing into .venv: $reason"
fi

if [ ! -x "$VENV_PY" ]; then
  if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 9))' 2>/dev/null; then
    echo "setup: error: $PYTHON is missing or older than Python 3.9; give one with PYTHON=/path/to/python3" >&2
    exit 1
  fi
  if [ "$TORCH_VERSION" = 2.13.0 ] && ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 10))'; then
    echo "setup: error: PyTorch 2.13.0 (what CI tests) and MONAI 1.6 need Python 3.10 or later; give one with" \
         "PYTHON=/path/to/python3.11, or choose an older, untested PyTorch with TORCH_VERSION (e.g. 2.6.0)" >&2
    exit 1
  fi
  say "creating .venv with $("$PYTHON" -c 'import sys; print("Python %d.%d.%d" % sys.version_info[:3])') ($PYTHON) ..."
  "$PYTHON" -m venv .venv
  say "updating pip inside .venv (a few seconds) ..."
  pip_install --quiet --upgrade pip || failed "the newest pip"
fi
if ! "$VENV_PY" -m pip --version >/dev/null 2>&1; then
  echo "setup: error: .venv has no working pip; remove .venv and run this again (on Debian/Ubuntu the" \
       "python3-venv package provides pip for new environments)" >&2
  exit 1
fi
previous_extras=$(sed -n 's/^extras //p' "$STAMP" 2>/dev/null || true)

# PyTorch first and pinned, so that the project's torch>=floor requirement does not pick the newest release;
# kept when an installed PyTorch already meets the floor in pyproject.toml.
have_torch=$("$VENV_PY" - <<'PY'
import importlib.metadata as md, re
floor = re.search(r'"torch>=([0-9.]+)', open("pyproject.toml").read())
try:
    version = md.version("torch")
except md.PackageNotFoundError:
    raise SystemExit
number = lambda v: tuple(int(p) for p in re.findall(r"\d+", v.split("+")[0])[:3])
print(version if floor is None or number(version) >= number(floor.group(1)) else "")
PY
)
if [ -n "$have_torch" ]; then
  say "PyTorch $have_torch is installed; keeping it"
else
  t=$SECONDS
  if [ -n "$TORCH_INDEX_URL" ]; then
    say "installing PyTorch $TORCH_VERSION from $TORCH_INDEX_URL ..."
    pip_install "torch==$TORCH_VERSION" --index-url "$TORCH_INDEX_URL" || failed "PyTorch $TORCH_VERSION"
  else
    say "installing PyTorch $TORCH_VERSION (the CPU build is about 200 MB; plain PyPI serves the CUDA build" \
        "on Linux, several GB: see the top of scripts/setup.sh for CPU_ONLY=1) ..."
    pip_install "torch==$TORCH_VERSION" || failed "PyTorch $TORCH_VERSION"
  fi
  say "PyTorch installed ($((SECONDS - t)) s)"
fi

# The extras asked for now plus those installed before, so that the stamp stays true for both.
extras=$(printf '%s\n%s\n' "${EXTRAS:-}" "$previous_extras" | tr ',' '\n' | tr '[:upper:]' '[:lower:]' | tr -d ' \t' \
         | grep . | sort -u | paste -sd, - || true)
t=$SECONDS
say "installing AttentionUNetSeg (editable)${extras:+ with extras [$extras]} and its dependencies: MONAI," \
    "SimpleITK, OpenVINO, nibabel, SciPy, ... ..."
pip_install -e ".${extras:+[$extras]}" || failed "AttentionUNetSeg and its dependencies"
say "AttentionUNetSeg installed ($((SECONDS - t)) s)"

printf '# written by scripts/setup.sh after a successful install; delete it (or SETUP_FORCE=1) to reinstall\nkey %s\nextras %s\n' \
  "$(state key)" "$extras" > "$STAMP"
say "done in $((SECONDS - START)) s; the next call installs nothing unless pyproject.toml changes." \
    "The command line tool: .venv/bin/attention-unet, or attention-unet after: source .venv/bin/activate"
