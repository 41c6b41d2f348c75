#!/usr/bin/env bash
# The README's walk-through, checked: signup → signin → request a PDF and a CSV → poll →
# download, against a running `quire dev` (or any Quire API).
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

PDF=$(post /reports '{"report_type":"profile","format":"pdf","parameters":{}}' "${AUTH[@]}" | json id)
CSV=$(post /reports '{"report_type":"activity","format":"csv","parameters":{"days":30}}' "${AUTH[@]}" | json id)

wait_completed() {
  local status
  for _ in $(seq 1 120); do
    status=$(curl -sf "$API/reports/$1" "${AUTH[@]}" | json status)
    case $status in
      completed) return 0 ;;
      failed|cancelled) echo "report $1 ended $status" >&2; return 1 ;;
    esac
    sleep 0.5
  done
  echo "report $1 still $status after 60 s" >&2
  return 1
}
wait_completed "$PDF"
wait_completed "$CSV"

curl -sfL -o "$OUT/profile.pdf" "$API/reports/$PDF/download" "${AUTH[@]}"
curl -sfL -o "$OUT/activity.csv" "$API/reports/$CSV/download" "${AUTH[@]}"

head -c 5 "$OUT/profile.pdf" | grep -q '%PDF-' || { echo "profile.pdf is not a PDF" >&2; exit 1; }
head -n 1 "$OUT/activity.csv" | grep -q '^id,report_type,format,status' || { echo "activity.csv has no header" >&2; exit 1; }
grep -q "$PDF" "$OUT/activity.csv" || { echo "activity.csv does not list the profile report" >&2; exit 1; }
echo "walk-through ok: $OUT/profile.pdf ($(wc -c <"$OUT/profile.pdf") bytes), $OUT/activity.csv ($(wc -l <"$OUT/activity.csv") lines)"
