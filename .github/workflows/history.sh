#!/usr/bin/env bash
# The history of main's accepted builds: report.json files of the last BUILDS green runs on main (the artifact
# NAME each kept, plus this run's gate-out/) laid out as history/<entry>/<commit>/report.json, then
# `edgefocal history` per matrix entry into history-out/<entry>/ (history.md, history.html), the markdown
# appended to the job summary. report.json records no date: a downloaded one gets its run's start as mtime,
# this run's has its manifest.json (`created`). Exit 1 when a figure drifted over the last WINDOW builds;
# exit 2 of `edgefocal history` (e.g. the model or eval set changed, so old reports no longer compare) is a
# warning: the history restarts once the old reports have left the window.
set -euo pipefail
name="$1" builds="$2" window="$3"
rm -rf history history-out

# this run first: a re-run of a commit replaces nothing older than itself
for report in gate-out/*/report.json; do
  [ -f "$report" ] || continue
  entry=$(basename "$(dirname "$report")")
  dest="history/$entry/${GITHUB_SHA:0:7}"
  mkdir -p "$dest"
  cp "$report" "$dest/"
  [ -f "$(dirname "$report")/manifest.json" ] && cp "$(dirname "$report")/manifest.json" "$dest/"
done

gh run list --repo "$GITHUB_REPOSITORY" --workflow edgefocal-gate.yml --branch main --status success \
    --limit "$((builds - 1))" --json databaseId,headSha,createdAt \
    --jq '.[] | "\(.databaseId) \(.headSha) \(.createdAt)"' |
while read -r run_id sha created; do
  tmp=$(mktemp -d)
  if gh run download "$run_id" --repo "$GITHUB_REPOSITORY" --name "$name" --dir "$tmp"; then
    for report in "$tmp"/*/report.json; do
      [ -f "$report" ] || continue
      dest="history/$(basename "$(dirname "$report")")/${sha:0:7}"
      [ -e "$dest" ] && continue   # a newer run of the same commit is already there
      mkdir -p "$dest"
      cp "$report" "$dest/report.json"
      touch -d "$created" "$dest/report.json"
    done
  else
    echo "::warning::run $run_id on main kept no artifact $name: left out of the history"
  fi
  rm -rf "$tmp"
done

status=0
for dir in history/*/; do
  [ -d "$dir" ] || continue
  entry=$(basename "$dir")
  rc=0
  edgefocal history "$dir" --window "$window" --output "history-out/$entry" || rc=$?
  if [ "$rc" = 1 ]; then
    status=1
  elif [ "$rc" != 0 ]; then
    echo "::warning::edgefocal history of $entry exited $rc: no history for it in this run"
  fi
  if [ -f "history-out/$entry/history.md" ]; then
    cat "history-out/$entry/history.md" >> "$GITHUB_STEP_SUMMARY"
  fi
done
exit "$status"
