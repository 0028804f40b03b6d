#!/usr/bin/env bash
# Starts a Neurite homeserver locally under `wrangler dev`, doing all set-up first
# (tools, build, local D1 schema, a development signing key generated once).
#
# Settings (flag, or environment variable, or default):
#   --port N            NEURITE_PORT         8787
#   --server-name NAME  NEURITE_SERVER_NAME  localhost:<port>
#   --state-dir DIR     NEURITE_STATE_DIR    .neurite/<server name>
#   --registration M    NEURITE_REGISTRATION open   (closed | open | token)
#   --inspector-port N  NEURITE_INSPECTOR_PORT  port + 1000
#   --https             NEURITE_HTTPS=1      serve HTTPS with a self-signed certificate
#                                            (what other servers such as Synapse need)
# NEURITE_SKIP_SETUP=1 / NEURITE_SKIP_BUILD=1 skip those steps (the test harness uses them).
# NEURITE_OBSERVABILITY=1 keeps wrangler.toml's Workers Logs emulation on.
# NEURITE_GUEST_ACCESS=off turns guest access off (on for local runs).
# NEURITE_USER_DIRECTORY_SEARCH_ALL_USERS=on lets the user directory find every local account.
# Federation, locally: loopback peers are reached over plain HTTP
# (FEDERATION_LOOPBACK=plaintext; NEURITE_FEDERATION_LOOPBACK=off refuses them, as a
# deployment does), no SRV lookups, no notaries unless
# NEURITE_TRUSTED_KEY_SERVERS names some; NEURITE_FEDERATION_DENY sets the deny list.
# Media: NEURITE_MEDIA_MAX_UPLOAD_SIZE (bytes, 52428800), NEURITE_MEDIA_LEGACY_DOWNLOAD
# (frozen | open | a time in ms; frozen, as deployed), NEURITE_MEDIA_USER_QUOTA
# (bytes; none), NEURITE_MEDIA_REMOTE_RETENTION_DAYS (days; for good).
#
# Generated once per state directory and passed to the worker:
#   signing.key                  the server's ed25519 signing key (SIGNING_KEY)
#   registration_shared_secret   the Synapse-style shared secret for
#                                /_synapse/admin/v1/register (REGISTRATION_SHARED_SECRET), e.g.
#                                register_new_matrix_user -k "$(cat <state>/registration_shared_secret)" ...
set -euo pipefail
cd "$(dirname "$0")/.."

port="${NEURITE_PORT:-8787}"
server_name="${NEURITE_SERVER_NAME:-}"
state_dir="${NEURITE_STATE_DIR:-}"
registration="${NEURITE_REGISTRATION:-open}"
inspector_port="${NEURITE_INSPECTOR_PORT:-}"
https="${NEURITE_HTTPS:-0}"
while [ $# -gt 0 ]; do
  case "$1" in
    --port) port="$2"; shift 2 ;;
    --server-name) server_name="$2"; shift 2 ;;
    --state-dir) state_dir="$2"; shift 2 ;;
    --registration) registration="$2"; shift 2 ;;
    --inspector-port) inspector_port="$2"; shift 2 ;;
    --https) https=1; shift ;;
    -h|--help) sed -n '2,27p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
done
server_name="${server_name:-localhost:$port}"
state_dir="${state_dir:-.neurite/${server_name//[^A-Za-z0-9._-]/_}}"
inspector_port="${inspector_port:-$((port + 1000))}"

[ "${NEURITE_SKIP_SETUP:-}" = 1 ] || scripts/setup.sh
[ "${NEURITE_SKIP_BUILD:-}" = 1 ] || scripts/build.sh

export PATH="$PWD/node_modules/.bin:$PATH"   # Node 22 for wrangler
export WRANGLER_SEND_METRICS=false
mkdir -p "$state_dir"

# The development signing key: generated once per state directory, never committed.
key_file="$state_dir/signing.key"
if [ ! -s "$key_file" ]; then
  seed=$(head -c 32 /dev/urandom | base64 | tr -d '=\n')
  version="a_$(head -c 6 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' | head -c 4)"
  (umask 077; echo "ed25519 $version $seed" > "$key_file")
  echo "[run] generated signing key $key_file" >&2
fi
signing_key=$(cat "$key_file")

# The shared secret for admin registration: generated once per state directory.
secret_file="$state_dir/registration_shared_secret"
if [ ! -s "$secret_file" ]; then
  (umask 077; head -c 32 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' > "$secret_file")
  echo "[run] generated registration shared secret $secret_file" >&2
fi
shared_secret=$(cat "$secret_file")

# The local configuration: wrangler.toml with Workers Logs (observability) off, unless
# NEURITE_OBSERVABILITY=1. Locally its emulation runs on the same thread as the worker
# and costs about a fifth of every request; deployed, it is Cloudflare's to carry.
config=wrangler.toml
if [ "${NEURITE_OBSERVABILITY:-0}" != 1 ]; then
  # wrangler also streams a trace of every invocation (each Durable Object call
  # included) to a local collector for its explorer: off as well.
  export X_LOCAL_OBSERVABILITY=false X_LOCAL_EXPLORER=false
  config="$state_dir/wrangler.local.toml"
  sed -e 's/^enabled = true$/enabled = false/' -e "s#^main = \"build/#main = \"$PWD/build/#" \
    wrangler.toml > "$config"
fi

# Local D1: the schema is idempotent and applied on every start.
wrangler d1 execute DB --local --config "$config" --persist-to "$state_dir" --file schema.sql > "$state_dir/d1-apply.log" 2>&1 \
  || { cat "$state_dir/d1-apply.log" >&2; exit 1; }

scheme=http
protocol_args=()
if [ "$https" = 1 ]; then
  scheme=https
  protocol_args=(--local-protocol https)
fi

echo "[run] Neurite $server_name on $scheme://127.0.0.1:$port (state in $state_dir)" >&2
exec wrangler dev --config "$config" --ip 127.0.0.1 --port "$port" --inspector-port "$inspector_port" \
  "${protocol_args[@]}" \
  --persist-to "$state_dir" --show-interactive-dev-session=false \
  --var "SERVER_NAME:$server_name" \
  --var "PUBLIC_BASEURL:$scheme://127.0.0.1:$port" \
  --var "REGISTRATION:$registration" \
  --var "GUEST_ACCESS:${NEURITE_GUEST_ACCESS:-on}" \
  --var "USER_DIRECTORY_SEARCH_ALL_USERS:${NEURITE_USER_DIRECTORY_SEARCH_ALL_USERS:-off}" \
  --var "SIGNING_KEY:$signing_key" \
  --var "FEDERATION_LOOPBACK:${NEURITE_FEDERATION_LOOPBACK:-plaintext}" \
  --var "TRUSTED_KEY_SERVERS:${NEURITE_TRUSTED_KEY_SERVERS:-}" \
  --var "DNS_RESOLVER:" \
  --var "FEDERATION_DENY:${NEURITE_FEDERATION_DENY:-}" \
  --var "MEDIA_MAX_UPLOAD_SIZE:${NEURITE_MEDIA_MAX_UPLOAD_SIZE:-52428800}" \
  --var "MEDIA_LEGACY_DOWNLOAD:${NEURITE_MEDIA_LEGACY_DOWNLOAD:-frozen}" \
  --var "MEDIA_USER_QUOTA:${NEURITE_MEDIA_USER_QUOTA:-}" \
  --var "MEDIA_REMOTE_RETENTION_DAYS:${NEURITE_MEDIA_REMOTE_RETENTION_DAYS:-}" \
  --var "REGISTRATION_SHARED_SECRET:$shared_secret"
