# A local tritonserver for the bench scripts: the release build of the
# backend, free ports, the server's CPU time, and a wait until it is
# ready. Source it from the project root; set $bin (the release folder)
# before calling serve.

# free_port: a TCP port nothing listens on now.
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# cpu_seconds PID: the process's user + system CPU seconds so far (/proc).
cpu_seconds() { awk -v t="$(getconf CLK_TCK)" '{ printf "%.3f", ($14 + $15) / t }' "/proc/$1/stat"; }

# serve REPOSITORY LOG: starts the server in the background on fresh ports
# ($http, $grpc, $metrics) and waits until it is ready; $server is its pid
# (launch-triton.sh execs tritonserver). Exits if the server dies first.
serve() {
    local repository=$1 log=$2
    http=$(free_port) grpc=$(free_port) metrics=$(free_port)
    bash scripts/launch-triton.sh --mode local --model-repository "$repository" \
        --backend-lib "$bin/libtriton_clip.so" --http-port "$http" --grpc-port "$grpc" \
        --metrics-port "$metrics" >"$log" 2>&1 &
    server=$!
    until curl -sf "http://127.0.0.1:$http/v2/health/ready" >/dev/null; do
        kill -0 "$server" 2>/dev/null || { tail "$log" >&2; exit 1; }
        sleep 0.2
    done
}
