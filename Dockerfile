# The agent image: nothing but the static binary (no base image can be
# pulled on our machines). Build it with `make image`, which builds
# bin/agent with CGO_ENABLED=0 first.
FROM scratch
COPY bin/agent /agent
# HTTP API, DNS (udp+tcp), gossip (udp+tcp), server RPC.
EXPOSE 8500 8600 8600/udp 8301 8301/udp 8300
VOLUME ["/data"]
ENTRYPOINT ["/agent"]
CMD ["run", "-dev", "-client", "0.0.0.0"]
