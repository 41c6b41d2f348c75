#!/usr/bin/env bash
# The README's walk-through, checked: signup → signin → report types → request a PDF
# profile and the activity as CSV and PDF → wait for each with `Prefer: wait` → download,
# against a running `quire dev` (or any Quire API).
#
#   scripts/walkthrough.sh [API_URL] [OUT_DIR]
#
# Needs curl and python3 (for JSON; the README uses jq for readability).
set -euo pipefail
API=${1:-http://127.0.0.1:8080}
OUT=${2:-.}
EMAIL="walkthrough-$RANDOM$RANDOM@example.com"
PASSWORD="correct horse battery"

json() { python3 -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }
post() { curl -sf -X POST "$API$1" -H 'content-type: application/json' "${@:3}" -d "$2"; }

post /auth/signup "{\"email\":\"$EMAIL\",\"password\":\"$PASSWORD\"}" >/dev/null
TOKEN=$(post /auth/signin "{\"email\":\"$EMAIL\",\"password\":\"$PASSWORD\"}" | json access_token)
AUTH=(-H "authorization: Bearer $TOKEN")

curl -sf "$API/report-types" "${AUTH[@]}" | python3 -c 'import json,sys; names=[t["name"] for t in json.load(sys.stdin)["items"]]; assert "profile" in names, names'

PDF=$(post /reports '{"report_type":"profile","format":"pdf"}' "${AUTH[@]}" | json id)
CSV=$(post /reports '{"report_type":"activity","format":"csv","parameters":{"days":30}}' "${AUTH[@]}" | json id)
ACT=$(post /reports '{"report_type":"activity","format":"pdf","parameters":{"days":30}}' "${AUTH[@]}" | json id)

# As the README: each request held by `Prefer: wait=30` until the report is finished.
wait_completed() {
  local status
  for _ in $(seq 1 4); do
    status=$(curl -sf "$API/reports/$1" "${AUTH[@]}" -H 'Prefer: wait=30' | json status)
    case $status in
      completed) return 0 ;;
      failed|cancelled) echo "report $1 ended $status" >&2; return 1 ;;
    esac
  done
  echo "report $1 still $status after 120 s" >&2
  return 1
}
wait_completed "$PDF"
wait_completed "$CSV"
wait_completed "$ACT"

curl -sfL -o "$OUT/profile.pdf" "$API/reports/$PDF/download" "${AUTH[@]}"
curl -sfL -o "$OUT/activity.csv" "$API/reports/$CSV/download" "${AUTH[@]}"
curl -sfL -o "$OUT/activity.pdf" "$API/reports/$ACT/download" "${AUTH[@]}"

head -c 5 "$OUT/profile.pdf" | grep -q '%PDF-' || { echo "profile.pdf is not a PDF" >&2; exit 1; }
head -c 5 "$OUT/activity.pdf" | grep -q '%PDF-' || { echo "activity.pdf is not a PDF" >&2; exit 1; }
head -n 1 "$OUT/activity.csv" | grep -q '^id,report_type,format,status' || { echo "activity.csv has no header" >&2; exit 1; }
grep -q "$PDF" "$OUT/activity.csv" || { echo "activity.csv does not list the profile report" >&2; exit 1; }
echo "walk-through ok: $OUT/profile.pdf ($(wc -c <"$OUT/profile.pdf") bytes), $OUT/activity.pdf ($(wc -c <"$OUT/activity.pdf") bytes), $OUT/activity.csv ($(wc -l <"$OUT/activity.csv") lines)"
