# mdns-gateway as a container for a Kubernetes-based router (deploy/kubernetes): it runs on the
# host network (it must see the VLAN interfaces and join mDNS groups on them).
#
# The default command runs the config at /etc/mdns-gateway/config.yaml: mount it there (the
# DaemonSet mounts its ConfigMap on /etc/mdns-gateway). Policies are ServicePolicy objects
# ('policies: {kubernetes: ...}'), or a directory in a mount of its own, e.g. a second
# ConfigMap on /etc/mdns-gateway/policies with 'policies: ./policies': the config file's own
# directory is refused as a policies directory (the config would be read as a policy).
#   docker run --network host -v /etc/mdns-gateway:/etc/mdns-gateway:ro mdns-gateway

# build stage: a wheel with the measured hot-path modules compiled (build_ext.py); the full
# image has the C compiler, the runtime image below does not need it
FROM python:3.11-bookworm AS build
WORKDIR /src
COPY pyproject.toml setup.py build_ext.py README.md ./
COPY bridge ./bridge
RUN MDNS_GATEWAY_COMPILE=1 pip wheel --no-cache-dir --no-deps -w /wheels .

FROM python:3.11-slim-bookworm
# chronyc, to ask chronyd whether its time is good (the chrony advertiser)
RUN apt-get update \
 && apt-get install -y --no-install-recommends chrony \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels

COPY policies/examples /usr/share/mdns-gateway/policies.examples
# no privilege: mDNS on 5353, DNS and HTTP above 1024 and multicast joins need none (the
# DaemonSet runs as the same uid, non-root, with every capability dropped)
USER 65532:65532
EXPOSE 5300/udp 5300/tcp 9353/tcp
ENTRYPOINT ["mdns-gateway"]
CMD ["run", "--config", "/etc/mdns-gateway/config.yaml"]
