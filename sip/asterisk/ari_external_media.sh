#!/usr/bin/env bash
# Put an existing ARI channel in a call with callbridge through ARI externalMedia over chan_websocket.
# Usage: ari_external_media.sh CHANNEL_ID  (the caller's channel, already in your Stasis app)
# Needs ari.conf credentials (ARI_USER/ARI_PASS), http.conf enabled, and websocket_client.conf's
# [callbridge] connection. Asterisk creates a WebSocket channel that dials callbridge; bridge the
# two and the caller talks to the agent.
set -euo pipefail
ARI=${ARI:-http://127.0.0.1:8088/ari}
AUTH=${ARI_USER:-callbridge}:${ARI_PASS:-secret}
APP=${APP:-callbridge}
caller=$1

media=$(curl -fsS -u "$AUTH" -X POST "$ARI/channels/externalMedia" \
  --data-urlencode "app=$APP" \
  --data-urlencode "external_host=callbridge" \
  --data-urlencode "transport=websocket" \
  --data-urlencode "encapsulation=none" \
  --data-urlencode "connection_type=client" \
  --data-urlencode "format=slin16" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')

bridge=$(curl -fsS -u "$AUTH" -X POST "$ARI/bridges?type=mixing" \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
curl -fsS -u "$AUTH" -X POST "$ARI/bridges/$bridge/addChannel?channel=$caller,$media" >/dev/null
echo "caller $caller and callbridge channel $media in bridge $bridge"
