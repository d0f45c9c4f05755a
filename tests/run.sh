#!/bin/sh
# Runs every test binary and the fuzz-corpus replays; sums their closing lines.
# Each binary ends with "N passed, N failed, N skipped"; the total comes last.
O=${O:-build}
pass=0; fail=0; skip=0; bad=0
for t in "$O"/test_* "$O"/replay_*; do
  [ -x "$t" ] || continue
  name=$(basename "$t")
  case "$name" in replay_*) args="fuzz/corpus/${name#replay_}";; *) args="";; esac
  echo "== $name"
  out=$($RUN "$t" $args 2>&1); rc=$?
  echo "$out" | grep -v -e '^ok ' -e '^skipped' | tail -n 40
  echo "$out" | grep '^skipped'  # every skip, whatever the length of the output
  line=$(echo "$out" | grep -E '^[0-9]+ passed, [0-9]+ failed' | tail -n 1)
  if [ -z "$line" ]; then echo "!! $name printed no summary (exit $rc)"; bad=$((bad+1)); continue; fi
  p=$(echo "$line" | sed -E 's/^([0-9]+) passed.*/\1/')
  f=$(echo "$line" | sed -E 's/^[0-9]+ passed, ([0-9]+) failed.*/\1/')
  s=$(echo "$line" | sed -nE 's/.*, ([0-9]+) skipped.*/\1/p'); s=${s:-0}
  pass=$((pass+p)); fail=$((fail+f)); skip=$((skip+s))
  if [ $rc -ne 0 ] && [ "$f" = 0 ]; then echo "!! $name exited $rc"; bad=$((bad+1)); fi
done
fail=$((fail+bad))
echo "total: $pass passed, $fail failed, $skip skipped"
[ $fail -eq 0 ]
