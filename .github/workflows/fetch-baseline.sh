#!/usr/bin/env bash
# Download artifact NAME from the last successful run of edgefocal-gate.yml on main into DIR.
# No baseline yet (first run, or it expired) is not an error: the PR is then gated without one.
set -euo pipefail
name="$1" dir="$2"
run_id=$(gh run list --repo "$GITHUB_REPOSITORY" --workflow edgefocal-gate.yml --branch main --status success \
           --limit 1 --json databaseId --jq '.[0].databaseId // empty')
if [ -z "$run_id" ]; then
  echo "::warning::no successful run on main yet: gating without a baseline"
  exit 0
fi
if ! gh run download "$run_id" --repo "$GITHUB_REPOSITORY" --name "$name" --dir "$dir"; then
  echo "::warning::run $run_id on main kept no artifact $name: gating without a baseline"
  rm -rf "$dir"
fi
