# ringkv: one kvd node in a container.
#
# Build it with `npm run image` (scripts/image.js). That script compiles the server, gathers the
# package as npm would install it (package.json, bin/, dist/src/, proto/ and the production
# node_modules, native RocksDB binding included) into a build context, and runs
# `docker build -f Dockerfile` on it. The image holds no compiler and no dev dependencies.
# BASE is an official Node 20 image by default; `npm run image -- --base IMAGE` picks another (the
# chaos tests build this same file from a locally imported base when no registry is reachable).
# The native binding is built for linux-x64 glibc: keep BASE a glibc (Debian) image.
#
# Run a node (the flags are kvd's, see `docker run --rm ringkv --help`):
#   docker network create ringkv
#   docker run -d --name n1 --network ringkv -v n1-data:/data ringkv \
#     --node-id 1 --initial-cluster 1=n1:7001/n1:7101,2=n2:7001/n2:7101,3=n3:7001/n3:7101
# Inside a container kvd listens on every interface; the address it registers (and other nodes
# and clients dial) is its --initial-cluster entry, or --advertise / --peer-advertise with --join.
# A lone node started without either registers 0.0.0.0:7001, which no client elsewhere can dial:
# give it --advertise NAME:7001 (its container name on a docker network, or a host address).
#
# Ports: 7001 clients (KvService, AdminService), 7101 peers (Raft, forwarding, meta calls),
# 8080 HTTP (/metrics, /healthz, /readyz). Data: /data (a volume; owned by the `node` user).
ARG BASE=node:20-bookworm-slim
FROM ${BASE}

WORKDIR /app
COPY package.json ./
COPY bin ./bin
COPY proto ./proto
COPY dist/src ./dist/src
COPY node_modules ./node_modules
# `kvd` and `kvctl` by name (the Helm chart's start script and helm test run them so).
COPY deploy/image/ /usr/local/bin/
RUN mkdir -p /data && chown node:node /data

ENV NODE_ENV=production \
    RINGKV_DATA_DIR=/data \
    RINGKV_LISTEN=0.0.0.0:7001 \
    RINGKV_PEER_LISTEN=0.0.0.0:7101 \
    RINGKV_HTTP_LISTEN=0.0.0.0:8080

USER node
VOLUME ["/data"]
EXPOSE 7001 7101 8080

# Alive = the HTTP side answers; readiness (/readyz) is for load balancers and orchestrators.
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:8080/healthz').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]

# SIGTERM drains and exits 0 (kvd handles it; no init process needed).
STOPSIGNAL SIGTERM
ENTRYPOINT ["node", "/app/bin/kvd.js"]
