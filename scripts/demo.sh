#!/usr/bin/env bash
# The demo: give a fresh network namespace its network with slirp, reach a
# service on the host's loopback from inside it through the gateway
# 10.0.2.2, and, with a port forward, reach a server inside the namespace
# from the host. Runs as root or as an ordinary user (user namespaces and a
# 0666 /dev/net/tun, as Debian ships them). Everything stays on this
# machine.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-$PWD/bin}
BUSYBOX=${BUSYBOX:-$(command -v busybox || echo /bin/busybox)}
work=$(mktemp -d)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT

say() { printf '\n== %s\n' "$*"; }

say "a web server on the host's loopback (127.0.0.1:18080)"
mkdir -p "$work/www"
echo "hello from the host, $(date -u +%H:%M:%S)" > "$work/www/hello.txt"
"$BUSYBOX" httpd -f -p 127.0.0.1:18080 -h "$work/www" & pids+=($!)

say "a new user+network namespace (unshare -Urn): only lo, and it is down"
unshare --user --map-root-user --net sleep infinity & ns=$!; pids+=($ns)
sleep 0.2
nsrun() { nsenter --target "$ns" --user --net -- "$@"; }
nsrun ip -br link

say "slirp --configure --mtu=65520 $ns tap0"
exec 3<> <(:)
"$BIN/slirp" --configure --mtu=65520 --ready-fd=3 --api-socket "$work/api.sock" "$ns" tap0 \
	3>"$work/ready" >"$work/slirp.out" 2>"$work/slirp.log" & pids+=($!)
for _ in $(seq 100); do [ -s "$work/ready" ] && break; sleep 0.1; done
[ "$(cat "$work/ready")" = 1 ] || { cat "$work/slirp.log"; echo "slirp did not become ready"; exit 1; }
cat "$work/slirp.out"
nsrun ip -br addr show tap0
nsrun ip route

say "inside the namespace: wget http://10.0.2.2:18080/hello.txt (the host's 127.0.0.1)"
nsrun "$BUSYBOX" wget -q -O - http://10.0.2.2:18080/hello.txt

if [ -x "$BIN/slirpctl" ]; then
	say "a web server inside the namespace on port 80, published as host port 18081"
	mkdir -p "$work/inside"
	echo "hello from inside the namespace" > "$work/inside/index.html"
	# nsenter itself (not the nsrun function, whose subshell would hide
	# the server's PID from the cleanup) runs in the background.
	nsenter --target "$ns" --user --net -- "$BUSYBOX" httpd -f -p 80 -h "$work/inside" & pids+=($!)
	"$BIN/slirpctl" --api-socket "$work/api.sock" add 18081:80
	"$BIN/slirpctl" --api-socket "$work/api.sock" ls
	say "on the host: wget http://127.0.0.1:18081/"
	for _ in $(seq 50); do "$BUSYBOX" wget -q -O - http://127.0.0.1:18081/ && break; sleep 0.1; done
fi

say "done: slirp stops when the namespace's last process exits"
