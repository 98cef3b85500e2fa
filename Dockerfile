# mdns-gateway as a container for a Kubernetes-based router: run it with hostNetwork: true
# (it must see the VLAN interfaces and join mDNS groups on them) and mount the config and the
# policies directory (a ConfigMap works: symlinked files are followed, changes hot-reload).
FROM python:3.11-slim-bookworm

RUN apt-get update \
 && apt-get install -y --no-install-recommends chrony \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY pyproject.toml README.md ./
COPY bridge ./bridge
RUN pip install --no-cache-dir .

COPY policies/examples /etc/mdns-gateway/policies.examples
EXPOSE 5300/udp 5300/tcp 9353/tcp
ENTRYPOINT ["mdns-gateway"]
CMD ["run", "--config", "/etc/mdns-gateway/config.yaml"]
