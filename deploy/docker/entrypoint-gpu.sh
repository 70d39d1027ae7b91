#!/bin/sh
# Entrypoint of the cityserve GPU image (Dockerfile.gpu): the TensorRT engines of the model repository,
# built for the GPU this container runs on (engines run only where they were built) into the engine
# cache volume and reused while the GPU, the TensorRT version and the graphs stay the same; then
# tritonserver, exec'd as PID 1 so that SIGTERM reaches it and in-flight requests drain.
#
# Environment (all optional):
#   CITYSERVE_REPO        the model repository, may be read-only           (default /models)
#   CITYSERVE_ENGINES     the engine cache, a volume                        (default /engines)
#   CITYSERVE_SERVED      where the repository to serve is written          (default /tmp/cityserve-served)
#   CITYSERVE_ADMIN_KEY   value of the cityserve-admin-key header that unlocks the shared-memory,
#                         model-repository, trace and logging APIs (unset: a random one, so they stay locked)
#   CITYSERVE_EXIT_TIMEOUT  seconds tritonserver waits for in-flight requests on SIGTERM (default 30)
#   TRITONSERVER          the server binary                                 (default tritonserver)
# Arguments are appended to tritonserver's; a repeated option takes the last value given.
set -eu

repo="${CITYSERVE_REPO:-/models}"
engines="${CITYSERVE_ENGINES:-/engines}"
served="${CITYSERVE_SERVED:-/tmp/cityserve-served}"

cityserve repo engines "$repo" --cache "$engines" --out "$served"

admin_key="${CITYSERVE_ADMIN_KEY:-}"
if [ -z "$admin_key" ]; then
    admin_key="$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
fi
restricted="shared-memory,model-repository,trace,logging:cityserve-admin-key=${admin_key}"

exec "${TRITONSERVER:-tritonserver}" \
    --model-repository="$served" \
    --model-control-mode=none \
    --strict-readiness=true \
    --exit-on-error=true \
    --disable-auto-complete-config \
    --allow-http=true --http-port=8000 \
    --allow-grpc=true --grpc-port=8001 \
    --allow-metrics=true --allow-gpu-metrics=true --allow-cpu-metrics=true --metrics-port=8002 \
    --http-restricted-api="$restricted" \
    --grpc-restricted-protocol="$restricted" \
    --exit-timeout-secs="${CITYSERVE_EXIT_TIMEOUT:-30}" \
    "$@"
