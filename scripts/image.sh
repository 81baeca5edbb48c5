#!/usr/bin/env bash
# Builds the container image with Debian's buildah (vfs storage, chroot isolation: no daemon,
# no registry), then smoke-runs it: the image's gateway answers /healthz on loopback against
# the local RabbitMQ and Postgres. Usage: scripts/image.sh [TAG]   (default surge:dev)
set -euo pipefail
cd "$(dirname "$0")/.."
tag=${1:-surge:dev}
bins=(surge surge-echo surge-sleep surge-settings)
say() { echo "image: $*" >&2; }
buildah() { command buildah --storage-driver vfs "$@"; }

# `type -P`: the function above would satisfy `command -v` and hide a missing binary.
if ! type -P buildah >/dev/null; then
  say "installing buildah (Debian)"
  apt-get install -y -qq buildah >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq buildah >/dev/null; }
fi
for b in "${bins[@]}"; do
  [ -x "target/release/$b" ] || { say "target/release/$b is missing: run cargo build --release first"; exit 1; }
done

# --- stage the root filesystem ---
root=target/image-rootfs
rm -rf "$root"
mkdir -p "$root/usr/local/bin" "$root/etc/ssl/certs" "$root/tmp"
chmod 1777 "$root/tmp"
for b in "${bins[@]}"; do install -m 0755 "target/release/$b" "$root/usr/local/bin/$b"; done
# Exactly the shared libraries the binaries link (glibc and friends), at the same paths.
for lib in $(ldd "${bins[@]/#/target/release/}" | grep -o '/[^ ]*\.so[^ ]*' | sort -u); do
  mkdir -p "$root$(dirname "$lib")"
  cp -L "$lib" "$root$lib"
done
cp -L /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/"
echo 'surge:x:65532:65532:surge:/nonexistent:/sbin/nologin' > "$root/etc/passwd"
echo 'surge:x:65532:' > "$root/etc/group"
echo 'hosts: files dns' > "$root/etc/nsswitch.conf"
printf '127.0.0.1 localhost\n::1 localhost\n' > "$root/etc/hosts"

say "building $tag"
buildah build --isolation chroot --layers=false -q -t "$tag" -f Containerfile "$root" >/dev/null
size=$(buildah images --format '{{.Size}}' "$tag" | head -1)
user=$(buildah inspect --format '{{.OCIv1.Config.User}}' "$tag")
say "built $tag ($size), user $user"
[ "$user" = "65532:65532" ] || { say "the image must run as 65532, not $user"; exit 1; }

# --- smoke run: migrate, then the gateway answers /healthz and /readyz ---
db=surge_image_smoke
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
ctr=$(buildah from -q "$tag")
cleanup() {
  # The gateway runs in its own process group: stop buildah and what it started inside.
  [ -n "${gw:-}" ] && kill -TERM -- "-$gw" 2>/dev/null
  gw=
  wait 2>/dev/null || true
  buildah rm "$ctr" >/dev/null 2>&1 || true
  psql -h 127.0.0.1 -U postgres -qtA -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
}
trap cleanup EXIT
env=(--env "SURGE_DATABASE__URL=postgres://postgres@127.0.0.1:5432/$db"
     --env "SURGE_BROKER__PREFIX=image-smoke-" --env "SURGE_HTTP__ADDR=127.0.0.1:$port")
buildah run --isolation chroot "${env[@]}" "$ctr" -- /usr/local/bin/surge migrate
setsid bash -c 'exec buildah --storage-driver vfs run --isolation chroot "$@"' _ "${env[@]}" "$ctr" -- /usr/local/bin/surge gateway \
  > target/image-smoke-gateway.log 2>&1 &
gw=$!
for _ in $(seq 300); do
  curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break
  sleep 0.2
done
passed=0
fail() { say "$1"; tail -n 20 target/image-smoke-gateway.log >&2 || true; exit 1; }
health=$(curl -fsS "http://127.0.0.1:$port/healthz") || fail "the image's gateway does not answer /healthz"
ready=$(curl -fsS "http://127.0.0.1:$port/readyz") || fail "the image's gateway is not ready"
say "healthz: $health; readyz: $ready"
passed=$((passed + 1))
# The function binaries start in the image too (their libraries are there): a bad setting is
# refused with the message that names it.
for b in surge-echo surge-sleep surge-settings; do
  out=$(buildah run --isolation chroot --env SURGE_FUNCTION__CONCURRENCY=0 "$ctr" -- "/usr/local/bin/$b" 2>&1 || true)
  grep -q "function.concurrency must be at least 1" <<<"$out" || { say "$b did not start in the image: $out"; exit 1; }
  passed=$((passed + 1))
done
cleanup
trap - EXIT
echo "image: $passed passed, 0 failed"
