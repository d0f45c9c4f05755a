#!/bin/sh
# tests/server/run.sh: starts `ember serve` on a free loopback port, waits for /health,
# runs the pytest suite against it, stops it with SIGTERM and checks it exits cleanly.
#   EMBER_BIN   server binary (default build/ember; build-asan/ember for the ASan run)
#   EMBER_MODEL model (default: the binary's default model)
#   PYTEST_ARGS extra pytest arguments (e.g. "-k hostile")
# Exit status: pytest's, or 1 if the server did not start or did not exit with 0.
set -u
cd "$(dirname "$0")/../.." || exit 1
BIN=${EMBER_BIN:-build/ember}
LOG=$(mktemp /tmp/ember-serve.XXXXXX.log)
KEY=test-key-123
[ -n "${EMBER_MODEL:-}" ] && MODEL_ARGS="-m $EMBER_MODEL" || MODEL_ARGS=""
# --port 0: the kernel picks a free port; the server prints it.
# shellcheck disable=SC2086
"$BIN" serve --host 127.0.0.1 --port 0 -np 4 -c 1024 --api-key "$KEY" --timeout 3 \
    --body-limit 1048576 -a ember-test $MODEL_ARGS 2>"$LOG" &
PID=$!
PORT=""
for _ in $(seq 1 300); do
  PORT=$(sed -n 's/.*listening on http:\/\/127\.0\.0\.1:\([0-9]*\).*/\1/p' "$LOG")
  if [ -n "$PORT" ] && curl -sf "http://127.0.0.1:$PORT/health" >/dev/null 2>&1; then break; fi
  kill -0 $PID 2>/dev/null || break
  sleep 0.2
done
if [ -z "$PORT" ] || ! curl -sf "http://127.0.0.1:$PORT/health" >/dev/null 2>&1; then
  echo "server did not become healthy:"; cat "$LOG"; kill $PID 2>/dev/null; exit 1
fi
echo "server pid $PID on port $PORT"
EMBER_URL="http://127.0.0.1:$PORT" EMBER_API_KEY=$KEY EMBER_CTX=1024 \
  python3 -m pytest -q tests/server ${PYTEST_ARGS:-}
rc=$?
kill -TERM $PID
wait $PID; src=$?
echo "server exit status $src"
if [ $src -ne 0 ] || grep -q "ERROR: AddressSanitizer\|ERROR: LeakSanitizer\|WARNING: ThreadSanitizer\|runtime error" "$LOG"; then
  echo "server log:"; tail -n 60 "$LOG"; rc=1
fi
rm -f "$LOG"
exit $rc
