#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The curl_to_nginx_across_two_nodes scenario on the local sandbox, start to finish:
#   installs what is missing, builds (the runner's image too), starts a
#   two-node sandbox cluster with nginx-demo and curl-demo and the runner's
#   image loaded on its nodes, runs the real `kubectl podtrace curl-demo
#   nginx-demo` (through kubectl's plugin discovery) while curl-demo curls
#   nginx-demo, stops after a bounded time with the per-flow summary, and
#   tears everything down.
# Usage: sudo scripts/demo.sh [netpol|dual] [extra kubectl podtrace flags, e.g. --packets]
#   netpol: the "why can't curl-demo reach nginx-demo?" walk-through instead:
#   NetworkPolicies deny it, a label allows it, an egress deny stops it again,
#   and its DNS lookups too (manifests/examples/netpol-*.yaml).
#   dual: the same curls on a dual-stack cluster, to nginx-demo's IPv6 address.
set -euo pipefail
scenario=curls
ip_family=ipv4
case "${1:-}" in
  netpol) scenario=netpol; shift ;;
  dual) ip_family=dual; shift ;;
esac
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
  echo "demo.sh: the sandbox builds network namespaces and the runner loads eBPF: sudo $0" >&2
  exit 1
fi
bash scripts/install-deps.sh
echo "==> building (cargo build)" >&2
cargo build --locked -p kubectl-podtrace -p podtrace-runner -p podtrace-sandbox 2>&1 | tail -n 2 >&2
target=$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')/debug
echo "==> building the runner's image (scripts/build-image.sh)" >&2
# sed reads every line: `head -1` could exit first and SIGPIPE the script.
image_archive=$(bash scripts/build-image.sh | sed -n 1p)

work=$(mktemp -d /tmp/podtrace-demo.XXXXXX)
sandbox_pid=""
trace_pid=""
cleanup() {
  [ -n "$trace_pid" ] && kill -INT "$trace_pid" 2>/dev/null && wait "$trace_pid" 2>/dev/null
  if [ -n "$sandbox_pid" ]; then
    kill -TERM "$sandbox_pid" 2>/dev/null || true
    wait "$sandbox_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

echo "==> starting the sandbox cluster (2 nodes, $ip_family, nginx-demo and curl-demo, $image_archive loaded)" >&2
"$target/podtrace-sandbox" up --kubeconfig "$work/kubeconfig" --image-archive "$image_archive" \
  --ip-family "$ip_family" \
  >"$work/sandbox.out" 2>"$work/sandbox.err" &
sandbox_pid=$!
for _ in $(seq 1 300); do
  [ -s "$work/sandbox.out" ] && break
  kill -0 "$sandbox_pid" 2>/dev/null || { cat "$work/sandbox.err" >&2; exit 1; }
  sleep 0.1
done
[ -s "$work/sandbox.out" ] || { echo "demo.sh: the sandbox did not get ready in 30 s" >&2; cat "$work/sandbox.err" >&2; exit 1; }
cat "$work/sandbox.out" >&2

export KUBECONFIG="$work/kubeconfig"
export PATH="$target:$PATH"   # kubectl finds kubectl-podtrace here
kubectl get pods -o wide
NGINX_POD_IP=$(kubectl get pod nginx-demo -o jsonpath='{.status.podIP}')
nginx_host=$NGINX_POD_IP
if [ "$ip_family" = dual ]; then
  kubectl get pod nginx-demo -o jsonpath='{.status.podIPs}' >&2; echo >&2
  # The second of nginx-demo's two addresses (IPv4 is the primary
  # family): its IPv6 one, bracketed in URLs.
  NGINX_POD_IP=$(kubectl get pod nginx-demo -o jsonpath='{.status.podIPs[1].ip}')
  nginx_host="[$NGINX_POD_IP]"
fi
echo "Nginx IP: $NGINX_POD_IP" >&2
nodes=$(kubectl get pod curl-demo nginx-demo -o jsonpath='{.items[*].spec.nodeName}' | tr ' ' '\n' | sort -u | wc -l)

if [ "$scenario" = netpol ]; then
  kubectl apply -f manifests/examples/netpol-demo.yaml >&2
  kubectl get netpol >&2
fi
echo >&2
echo "==> kubectl podtrace curl-demo nginx-demo --duration 20s $*" >&2
kubectl podtrace curl-demo nginx-demo --duration 20s "$@" \
  > >(tee "$work/trace.out") 2> >(tee "$work/trace.err" >&2) &
trace_pid=$!

# Curl once the trace is attached on every node (the plugin says "tracing on"
# on stderr for each; with -o json, a "ready" line on stdout).
for _ in $(seq 1 600); do
  attached=$(cat "$work/trace.err" "$work/trace.out" 2>/dev/null | grep -c -e "tracing on" -e '"type":"ready"' || true)
  [ "${attached:-0}" -ge "$nodes" ] && break
  kill -0 "$trace_pid" 2>/dev/null || break
  sleep 0.1
done
echo "==> the runners: runc containers from the runner's image" >&2
kubectl get pods -n podtrace -o custom-columns='POD:.metadata.name,NODE:.spec.nodeName,CONTAINER:.status.containerStatuses[0].containerID,IMAGE:.status.containerStatuses[0].imageID' >&2
podtrace_sandbox() { "$target/podtrace-sandbox" "$@"; }
curl_nginx() {
  podtrace_sandbox exec --kubeconfig "$KUBECONFIG" curl-demo -- \
    curl -s --max-time 3 -o /dev/null -w "$1: HTTP %{http_code}\n" "http://$nginx_host$2" >&2 || true
}
if [ "$scenario" = netpol ]; then
  curl_nginx "curl while denied" ""
  kubectl label pod curl-demo role=client >&2
  sleep 1
  curl_nginx "curl once labelled role=client" ""
  kubectl apply -f manifests/examples/netpol-deny-egress.yaml >&2
  sleep 1
  curl_nginx "curl under an egress deny" ""
else
  for i in 1 2 3; do
    podtrace_sandbox exec --kubeconfig "$KUBECONFIG" curl-demo -- \
      curl -s -g -o /dev/null -w "curl #$i: HTTP %{http_code}, %{size_download} bytes\n" "http://$nginx_host" >&2
    sleep 1
  done
  podtrace_sandbox exec --kubeconfig "$KUBECONFIG" curl-demo -- \
    curl -s -g -o /dev/null -w "curl to a closed port: %{http_code} (refused)\n" "http://$nginx_host:81" >&2 || true
fi

wait "$trace_pid"
status=$?
trace_pid=""
if [ "$scenario" = netpol ] && [ "$status" -eq 0 ]; then
  # The egress deny blocks DNS too: curl-demo's lookups, traced on port 53.
  echo >&2
  echo "==> kubectl podtrace curl-demo --port 53 --duration 8s $*" >&2
  kubectl podtrace curl-demo --port 53 --duration 8s "$@" 2> >(tee "$work/dns.err" >&2) &
  trace_pid=$!
  for _ in $(seq 1 600); do
    grep -q "tracing on" "$work/dns.err" 2>/dev/null && break
    kill -0 "$trace_pid" 2>/dev/null || break
    sleep 0.1
  done
  podtrace_sandbox exec --kubeconfig "$KUBECONFIG" curl-demo -- \
    curl -s --max-time 3 -o /dev/null -w "curl by name under the egress deny: HTTP %{http_code}\n" \
    http://kube-dns.kube-system.svc.cluster.local/ >&2 || true
  wait "$trace_pid"
  status=$?
  trace_pid=""
fi
echo >&2
echo "==> after the trace: jobs left in the cluster:" >&2
kubectl get jobs -A 2>&1 | sed 's/^/    /' >&2
exit "$status"
