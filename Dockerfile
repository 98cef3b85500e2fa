# mdns-gateway as a container for a Kubernetes-based router: run it with hostNetwork: true
# (it must see the VLAN interfaces and join mDNS groups on them) and mount the config and the
# policies directory (a ConfigMap works: symlinked files are followed, changes hot-reload).

# build stage: a wheel with the measured hot-path modules compiled (build_ext.py); the full
# image has the C compiler, the runtime image below does not need it
FROM python:3.11-bookworm AS build
WORKDIR /src
COPY pyproject.toml setup.py build_ext.py README.md ./
COPY bridge ./bridge
RUN MDNS_GATEWAY_COMPILE=1 pip wheel --no-cache-dir --no-deps -w /wheels .

FROM python:3.11-slim-bookworm
RUN apt-get update \
 && apt-get install -y --no-install-recommends chrony \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels

COPY policies/examples /etc/mdns-gateway/policies.examples
EXPOSE 5300/udp 5300/tcp 9353/tcp
ENTRYPOINT ["mdns-gateway"]
CMD ["run", "--config", "/etc/mdns-gateway/config.yaml"]
