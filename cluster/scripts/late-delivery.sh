#!/usr/bin/env bash
# Shows that a request its client abandoned still reaches the server once a
# partition heals (docs/PLATFORM.md, "Network faults"): two network
# namespaces joined by a veth pair, a Python HTTP/1.1 server in one, a
# client in the other that warms a keep-alive connection, then sends on it
# while a packet-filter rule drops its packets, gives up after 1 s and
# closes. The kernel keeps retransmitting the queued request; after the
# rule is removed the server prints "server got b'zombie'". Needs root,
# iproute2, iptables and python3. Prints the timeline.
set -u
ip netns del za 2>/dev/null; ip netns del zb 2>/dev/null
ip netns add za; ip netns add zb
ip link add va type veth peer name vb
ip link set va netns za; ip link set vb netns zb
ip -n za addr add 10.77.0.1/24 dev va; ip -n zb addr add 10.77.0.2/24 dev vb
ip -n za link set va up; ip -n zb link set vb up; ip -n za link set lo up; ip -n zb link set lo up
cat > /tmp/zsrv.py <<'PY'
import http.server, time, sys
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        n = int(self.headers.get('content-length', 0)); body = self.rfile.read(n)
        print(f"{time.time():.3f} server got {body!r}", flush=True)
        self.send_response(200); self.send_header("content-length", "2"); self.end_headers(); self.wfile.write(b"ok")
    def log_message(self, *a): pass
http.server.HTTPServer(("10.77.0.2", 8080), H).serve_forever()
PY
ip netns exec zb python3 /tmp/zsrv.py > /tmp/zsrv.log 2>&1 &
srv=$!
sleep 1
# warm a keep-alive connection, then partition, then send on it, client gives up after 1 s
ip netns exec za python3 - <<'PY' &
import http.client, time, socket
c = http.client.HTTPConnection("10.77.0.2", 8080, timeout=1)
c.request("POST", "/", body=b"warm"); print(f"{time.time():.3f} client warm:", c.getresponse().read(), flush=True)
time.sleep(1.0)   # partition starts meanwhile
try:
    c.request("POST", "/", body=b"zombie"); print(c.getresponse().read())
except Exception as e:
    print(f"{time.time():.3f} client gave up: {e!r}", flush=True)
c.close()
print(f"{time.time():.3f} client closed", flush=True)
time.sleep(12)
PY
cli=$!
sleep 0.5
echo "$(date +%s.%N | cut -c1-14) partition (drop in zb)"
ip netns exec zb iptables -A INPUT -s 10.77.0.1 -j DROP
sleep 5
ip netns exec zb iptables -D INPUT -s 10.77.0.1 -j DROP
echo "$(date +%s.%N | cut -c1-14) healed"
wait $cli
kill $srv
cat /tmp/zsrv.log
ip netns del za; ip netns del zb
