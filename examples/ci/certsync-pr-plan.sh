#!/bin/sh
# certsync-pr-plan.sh — the CI step of a pull-request plan (GitHub Actions, GitLab CI, any runner).
#
#   certsync-pr-plan.sh BASE_REF [HEAD_REF]
#
# Writes the Markdown plan to $PLAN_MARKDOWN (default certsync-plan.md) for a
# bot to post, prints the plan to the job log (GitHub workflow annotations
# when $GITHUB_ACTIONS is true), and exits like `plan --detailed-exitcode`:
# 0 no changes, 2 changes, 1 invalid manifests or an error. Needs no
# credentials and no state. Environment:
#   CERTSYNC        the binary (default: certsync on PATH)
#   CERTSYNC_CONFIG the config (default: certsync.yaml)
#   CERTSYNC_REPO   the checkout to read (default: the current directory)
#   PLAN_MARKDOWN   where the comment body goes
set -u
base=${1:?usage: certsync-pr-plan.sh BASE_REF [HEAD_REF]}
head=${2:-HEAD}
bin=${CERTSYNC:-certsync}
config=${CERTSYNC_CONFIG:-certsync.yaml}
repo=${CERTSYNC_REPO:-$(pwd)}
md=${PLAN_MARKDOWN:-certsync-plan.md}
format=text
[ "${GITHUB_ACTIONS:-}" = true ] && format=github

"$bin" plan --config "$config" --repo "$repo" --base "$base" --head "$head" --format markdown >"$md"
rc=$?
if [ "$rc" -ne 0 ] && [ "$rc" -ne 1 ]; then
	echo "certsync-pr-plan: plan failed with exit $rc" >&2
	exit 1
fi
[ -s "$md" ] || { echo "certsync-pr-plan: no plan was produced" >&2; exit 1; }
# The job log (and, on GitHub, annotations plus the job summary); its exit code is the verdict.
"$bin" plan --config "$config" --repo "$repo" --base "$base" --head "$head" --format "$format" --detailed-exitcode
